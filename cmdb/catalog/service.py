"""The catalogue's use cases as one service: authorisation, validation and transaction
boundaries, by use case in their own modules.

- items.py: categories, items and their versions, estimates and quotes;
- orders.py: submitting, reading, watching and cancelling orders;
- approvals.py: the approval route of an order and deciding its steps;
- fulfilment.py: manual tasks and the recipe run (``create_recipe_items``);
- subscriptions.py: reading and decommissioning subscriptions;
- base.py: what they share (the order's lock and ``_move``, the one status change).
"""

from __future__ import annotations

from cmdb.catalog.approvals import Approvals
from cmdb.catalog.orders import Ordering
from cmdb.catalog.subscriptions import Subscriptions


class CatalogService(Ordering, Approvals, Subscriptions):
    """Every catalogue use case; built once per process (see cmdb/services.py)."""
