from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from cmdb.core.mapping import item_fields
from cmdb.db.driver import CountingTx
from cmdb.servicemodel import queries as q
from cmdb.servicemodel.models import (
    SERVICE_LABELS,
    SLA,
    BusinessValue,
    CostRecovery,
    Service,
    ServiceKind,
)


def decimal_or_none(v: Any) -> Decimal | None:
    return Decimal(v) if v is not None else None


def service_from_row(row: dict[str, Any]) -> Service:
    return Service(
        **item_fields(row),
        kind=row["serviceKind"],
        sla=SLA(
            availability_target=decimal_or_none(row.get("slaAvailabilityTarget")),
            response_target_minutes=row.get("slaResponseTargetMinutes"),
            restore_target_minutes=row.get("slaRestoreTargetMinutes"),
            maintenance_windows=row.get("slaMaintenanceWindows") or [],
        ),
        business_value=BusinessValue(
            revenue_per_hour=decimal_or_none(row.get("revenuePerHour")),
            users=row.get("users"),
        ),
        cost_recovery=row.get("costRecovery") or CostRecovery.OWNER,
    )


def sla_properties(sla: SLA) -> dict[str, Any]:
    # Decimals are stored as strings: exact, and comparable as written.
    return {
        "slaAvailabilityTarget": (
            str(sla.availability_target) if sla.availability_target is not None else None
        ),
        "slaResponseTargetMinutes": sla.response_target_minutes,
        "slaRestoreTargetMinutes": sla.restore_target_minutes,
        "slaMaintenanceWindows": sla.maintenance_windows or None,
    }


def value_properties(value: BusinessValue) -> dict[str, Any]:
    return {
        "revenuePerHour": (
            str(value.revenue_per_hour) if value.revenue_per_hour is not None else None
        ),
        "users": value.users,
    }


class ServiceRepository:
    @staticmethod
    async def create(
        tx: CountingTx,
        service_id: str,
        kind: ServiceKind,
        props: dict[str, Any],
        refs: dict[str, Any],
        now: datetime,
    ) -> Service:
        row = await tx.one(
            q.create_service(SERVICE_LABELS[kind]),
            {"id": service_id, "props": props, "now": now, **refs},
        )
        assert row is not None
        return service_from_row(row["item"])

    @staticmethod
    async def update(
        tx: CountingTx, service_id: str, props: dict[str, Any], refs: dict[str, Any],
        now: datetime,
    ) -> Service:
        row = await tx.one(q.UPDATE_SERVICE, {"id": service_id, "props": props, "now": now,
                                              **refs})
        assert row is not None
        return service_from_row(row["item"])
