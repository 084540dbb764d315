"""Bulk upserts of org units, items and relationships (benchmark loader, discovery)."""

from cmdb.bulk.models import (
    DEFAULT_BATCH_SIZE,
    BulkResult,
    CIRow,
    ItemRow,
    OrgRow,
    Progress,
    Rejection,
    RelationRow,
    ServiceRow,
)
from cmdb.bulk.service import BulkService
from cmdb.core.models import RejectCode

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "BulkResult",
    "BulkService",
    "CIRow",
    "ItemRow",
    "OrgRow",
    "Progress",
    "RejectCode",
    "Rejection",
    "RelationRow",
    "ServiceRow",
]
