"""Typed, directed relationships between items. Impact flows from provider to consumer."""
