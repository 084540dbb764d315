"""Reads compiled to one Cypher statement per operation (issue: GraphQL core faster than a
generic GraphQL-to-Cypher library): plan the selection, render it, run it, shape the answer."""
