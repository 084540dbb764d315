from __future__ import annotations

from datetime import datetime

from cmdb.core.models import ItemBase, LifecycleStatus
from cmdb.health import periods


def in_maintenance(item: ItemBase, at: datetime) -> bool:
    """In maintenance by lifecycle status, or (a service) inside one of its SLA windows."""
    if item.lifecycle_status is LifecycleStatus.MAINTENANCE:
        return True
    sla = getattr(item, "sla", None)
    return bool(sla and periods.within(list(sla.maintenance_windows), at))
