"""GraphQL views of the domain models, and the per-request context they read from.

The schema is assembled above these views and the resolvers, in ``cmdb.api.schema``."""
