"""Discovery: sources, ingested batches reconciled into CIs and relationships, history."""
