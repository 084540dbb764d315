"""Self-service catalogue: items, orders, approvals, fulfilment, subscriptions."""
