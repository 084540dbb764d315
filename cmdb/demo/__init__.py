"""The demo enterprise: declarative data (``data``) and an idempotent loader (``loader``)."""
