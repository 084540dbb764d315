"""Planned changes: CIs and a time window, checked for impact and collisions before they run."""
