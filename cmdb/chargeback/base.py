"""What every chargeback use case stands on: the repository, the billing currency, who may
manage, and a period argument parsed once (``ChargePeriod``) with the field it came in."""

from __future__ import annotations

from decimal import Decimal

from cmdb.chargeback.models import CENT, ChargePeriod
from cmdb.chargeback.repository import ChargebackRepository
from cmdb.core.models import DomainError
from cmdb.db.driver import Database
from cmdb.identity.principal import Permission, Principal, require_permission
from cmdb.settings import Settings


def parse_period(text: str, field: str = "period") -> ChargePeriod:
    """A period argument (``YYYY-MM``), refused as an error of ``field``."""
    try:
        return ChargePeriod.parse(text)
    except ValueError as e:
        raise DomainError.single(field, str(e)) from None


def money(minor: int | None) -> Decimal:
    """Cents as an amount to the cent."""
    return (Decimal(minor or 0) * CENT).quantize(CENT)


class ServiceBase:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.repo = ChargebackRepository(db)

    @property
    def currency(self) -> str:
        return self.settings.chargeback_currency

    def _manage(self, principal: Principal | None, action: str) -> Principal:
        return require_permission(principal, Permission.CHARGEBACK_MANAGE, action)
