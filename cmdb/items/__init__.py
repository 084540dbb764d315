"""The items core: configuration items, service records and their relationships; the one
place where they are written."""
