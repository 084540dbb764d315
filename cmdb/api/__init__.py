"""The API's assembly: the GraphQL schema and its HTTP view, above every domain."""
