"""Per-consumption chargeback and showback calculated from the graph."""
