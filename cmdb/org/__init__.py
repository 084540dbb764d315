"""Owner groups, cost centres (a hierarchy) and locations."""
