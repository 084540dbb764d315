"""Configuration items: classes, identifiers, lifecycle."""
