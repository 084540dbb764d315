"""Health roll-up: rules held as data on relationships, propagated provider -> consumer."""
