"""Items: configuration items, service records and the relationships between them."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from cmdb.core.models import Criticality, FrozenModel, ItemBase, LifecycleStatus, OperationalState
from cmdb.core.validation import NonBlankName
from cmdb.identity.scope import EVERYTHING, Visibility

if TYPE_CHECKING:
    from pydantic import ValidationInfo


class CIClass(StrEnum):
    SERVER = "Server"
    HYPERVISOR_HOST = "HypervisorHost"
    VIRTUAL_MACHINE = "VirtualMachine"
    CLUSTER = "Cluster"
    VIRTUAL_DESKTOP = "VirtualDesktop"
    DESKTOP_POOL = "DesktopPool"
    NETWORK_DEVICE = "NetworkDevice"
    LOAD_BALANCER = "LoadBalancer"
    STORAGE_VOLUME = "StorageVolume"
    DATABASE = "Database"
    APPLICATION_INSTANCE = "ApplicationInstance"
    SOFTWARE_PACKAGE = "SoftwarePackage"


class CIFamily(StrEnum):
    """Abstract classes above the concrete ones; filtering by a family selects all below it."""

    HARDWARE = "Hardware"
    COMPUTE = "Compute"
    VIRTUAL = "Virtual"
    NETWORK = "Network"
    STORAGE = "Storage"
    SOFTWARE = "Software"
    GROUPING = "Grouping"


# Concrete class -> its ancestors, nearest first. Also the node's extra labels.
CLASS_ANCESTORS: dict[CIClass, tuple[CIFamily, ...]] = {
    CIClass.SERVER: (CIFamily.COMPUTE, CIFamily.HARDWARE),
    CIClass.HYPERVISOR_HOST: (CIFamily.COMPUTE, CIFamily.HARDWARE),
    CIClass.VIRTUAL_MACHINE: (CIFamily.COMPUTE, CIFamily.VIRTUAL),
    CIClass.VIRTUAL_DESKTOP: (CIFamily.COMPUTE, CIFamily.VIRTUAL),
    CIClass.CLUSTER: (CIFamily.GROUPING,),
    CIClass.DESKTOP_POOL: (CIFamily.GROUPING,),
    CIClass.NETWORK_DEVICE: (CIFamily.NETWORK, CIFamily.HARDWARE),
    CIClass.LOAD_BALANCER: (CIFamily.NETWORK, CIFamily.HARDWARE),
    CIClass.STORAGE_VOLUME: (CIFamily.STORAGE,),
    CIClass.DATABASE: (CIFamily.SOFTWARE,),
    CIClass.APPLICATION_INSTANCE: (CIFamily.SOFTWARE,),
    CIClass.SOFTWARE_PACKAGE: (CIFamily.SOFTWARE,),
}


def expand_classes(classes: list[CIClass], families: list[CIFamily]) -> list[str]:
    """Concrete class names selected by the given classes and families."""
    chosen = {c.value for c in classes}
    for cls, ancestors in CLASS_ANCESTORS.items():
        if any(f in ancestors for f in families):
            chosen.add(cls.value)
    return sorted(chosen)


def class_labels(cls: CIClass) -> str:
    """``:CI:Item:<Family>...:<Class>`` label text, built only from the enums above."""
    return ":".join(["", "Item", "CI", *(f.value for f in CLASS_ANCESTORS[cls]), cls.value])


_MAC = re.compile(r"^([0-9A-F]{2}:){5}[0-9A-F]{2}$")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DOMAIN = re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _mac_form(v: str) -> str:
    v = v.upper().replace("-", ":")
    if re.fullmatch(r"[0-9A-F]{12}", v):
        v = ":".join(v[i : i + 2] for i in range(0, 12, 2))
    return v


# Identifier -> (its normal form from the stripped value, the pattern it must then match,
# the error otherwise).
_NORMAL_FORMS: dict[str, tuple[Callable[[str], str], re.Pattern[str], str]] = {
    "host_name": (str.lower, _HOST, "host name must be letters, digits and hyphens (1-63)"),
    "domain": (lambda v: v.lower().rstrip("."), _DOMAIN,
               "domain must be dot-separated labels of letters, digits, hyphens"),
    "mac_address": (_mac_form, _MAC,
                    "MAC address must be six hex pairs, e.g. 00:1A:2B:3C:4D:5E"),
}


class Identifiers(FrozenModel):
    """Identifiers normalised so that the same thing always compares equal."""

    serial_number: str | None = Field(None, min_length=1, max_length=128)
    host_name: str | None = Field(None, max_length=63)
    domain: str | None = Field(None, max_length=253)
    mac_address: str | None = None
    cloud_instance_id: str | None = Field(None, min_length=1, max_length=256)

    @field_validator("serial_number", "cloud_instance_id")
    @classmethod
    def _strip(cls, v: str | None) -> str | None:
        return v.strip() if v is not None else None

    @field_validator("host_name", "domain", "mac_address")
    @classmethod
    def _normalised(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return None
        normalise, form, message = _NORMAL_FORMS[info.field_name or ""]
        v = normalise(v.strip())
        if not form.match(v):
            raise ValueError(message)
        return v

    @property
    def fqdn(self) -> str | None:
        if self.host_name and self.domain:
            return f"{self.host_name}.{self.domain}"
        return None


class ConfigurationItem(ItemBase):
    ci_class: CIClass
    identifiers: Identifiers = Identifiers()
    source: str | None = None
    last_seen_at: Any = None
    # Discovery: provenance per attribute and sightings per source (JSON, read on demand).
    provenance_json: str | None = None
    seen_by_json: str | None = None
    stale_since: Any = None
    merged_into: str | None = None


class ItemWrite(BaseModel):
    """Fields a client may set on create (all) or update (those given), CI or service."""

    model_config = ConfigDict(extra="forbid")

    name: NonBlankName = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=4000)
    lifecycle_status: LifecycleStatus = LifecycleStatus.IN_SERVICE
    operational_state: OperationalState = OperationalState.UNKNOWN
    criticality: Criticality = Criticality.MEDIUM
    owner_group_id: str | None = None
    cost_centre_id: str | None = None
    location_id: str | None = None


class CIWrite(ItemWrite):
    ci_class: CIClass
    identifiers: Identifiers = Identifiers()
    attributes: dict[str, Any] = {}


# --- asset records ---------------------------------------------------------------------------

MAX_MONEY = Decimal("1e12")


def _whole_cents(v: Decimal) -> Decimal:
    if v != v.quantize(Decimal("0.01")):
        raise ValueError("must be in whole cents (at most two decimals)")
    return v


Money = Annotated[Decimal, Field(ge=0, lt=MAX_MONEY), AfterValidator(_whole_cents)]
Text = Annotated[str | None, Field(None, max_length=200)]


class AssetInput(BaseModel):
    """A CI's asset record (ServiceNow's alm_asset): what it cost, how it depreciates and what
    its support contract costs a month. Setting it replaces the whole record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    purchase_price: Money
    currency: str | None = None  # None: the installation's chargeback currency
    purchase_date: date
    depreciation_months: int = Field(ge=1, le=600)
    residual_value: Money = Decimal(0)
    support_monthly: Money = Decimal(0)
    support_start: date | None = None  # None: the purchase date
    support_end: date | None = None  # the first day no longer covered; None: open
    warranty_end: date | None = None
    asset_tag: Text = None
    serial_number: Text = None
    vendor: Text = None

    @field_validator("asset_tag", "serial_number", "vendor")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip()
        if not v:
            raise ValueError("must not be blank (leave it out instead)")
        return v

    @field_validator("currency")
    @classmethod
    def _currency(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Z]{3}", v):
            raise ValueError("must be a three-letter ISO 4217 code, e.g. EUR")
        return v

    @field_validator("purchase_date", "support_start", "support_end", "warranty_end")
    @classmethod
    def _year(cls, v: date | None) -> date | None:
        if v is not None and not 1900 <= v.year <= 2999:
            raise ValueError("must be a date between the years 1900 and 2999")
        return v

    def conflicts(self) -> list[tuple[str, str]]:
        """(field, message) of the values that do not fit together."""
        errors = []
        if self.residual_value >= self.purchase_price and self.purchase_price:
            errors.append(("residual_value", "must be below the purchase price"))
        elif self.residual_value and not self.purchase_price:
            errors.append(("residual_value", "must be 0 when the purchase price is 0"))
        start = self.support_start or self.purchase_date
        if self.support_end is not None and self.support_end <= start:
            errors.append(("support_end", f"must be after the support start ({start})"))
        if self.warranty_end is not None and self.warranty_end < self.purchase_date:
            errors.append(("warranty_end", "must not be before the purchase date"))
        return errors


class Asset(FrozenModel):
    """An asset record as stored, with the CI it belongs to."""

    ci_id: str
    purchase_price: Decimal
    currency: str
    purchase_date: date
    depreciation_months: int
    residual_value: Decimal
    support_monthly: Decimal
    support_start: date
    support_end: date | None
    warranty_end: date | None
    asset_tag: str | None
    serial_number: str | None
    vendor: str | None
    updated_at: datetime | None = None
    updated_by: str | None = None


class ServiceKind(StrEnum):
    BUSINESS = "BUSINESS"
    TECHNICAL = "TECHNICAL"


class CostRecovery(StrEnum):
    """Who pays a service's own cost (what reaches it from the CIs and services below it):
    its owning cost centre (the default: showback to its owner); its consumers (the
    subscriptions for it, in proportion to the days each was active in the month); or
    nobody directly: the fees of its catalogue items recover it (PRICES: the service keeps
    its cost, not invoiced, and chargeRecovery compares it with those fees)."""

    OWNER = "OWNER"
    CONSUMERS = "CONSUMERS"
    PRICES = "PRICES"


SERVICE_LABELS = {ServiceKind.BUSINESS: ":Item:Service:BusinessService",
                  ServiceKind.TECHNICAL: ":Item:Service:TechnicalService"}

# "Sun 02:00-04:00" or "Daily 23:00-01:00", UTC.
_WINDOW = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun|Daily) ([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$"
)


class SLA(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    availability_target: Decimal | None = Field(None, ge=0, le=100, decimal_places=4)
    response_target_minutes: int | None = Field(None, ge=0)
    restore_target_minutes: int | None = Field(None, ge=0)
    maintenance_windows: list[str] = []

    @field_validator("maintenance_windows")
    @classmethod
    def _windows(cls, v: list[str]) -> list[str]:
        for w in v:
            if not _WINDOW.match(w):
                raise ValueError(
                    f"maintenance window {w!r} must look like 'Sun 02:00-04:00' (UTC)"
                )
        return v


class BusinessValue(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    revenue_per_hour: Decimal | None = Field(None, ge=0, decimal_places=2)
    users: int | None = Field(None, ge=0)


class Service(ItemBase):
    kind: ServiceKind
    sla: SLA = SLA()
    business_value: BusinessValue = BusinessValue()
    cost_recovery: CostRecovery = CostRecovery.OWNER


class ServiceWrite(ItemWrite):
    kind: ServiceKind
    sla: SLA = SLA()
    business_value: BusinessValue = BusinessValue()
    cost_recovery: CostRecovery = CostRecovery.OWNER
    attributes: dict[str, object] = {}


class RelationType(StrEnum):
    DEPENDS_ON = "DEPENDS_ON"
    RUNS_ON = "RUNS_ON"
    MEMBER_OF = "MEMBER_OF"
    CONNECTS_TO = "CONNECTS_TO"
    CONTAINS = "CONTAINS"
    USES = "USES"
    INSTALLED_ON = "INSTALLED_ON"


class Direction(StrEnum):
    OUTGOING = "OUTGOING"
    INCOMING = "INCOMING"
    BOTH = "BOTH"


SERVICE = "SERVICE"
_COMPUTE_HOSTS = {"Server", "HypervisorHost", "VirtualMachine", "Cluster"}
_WORKLOADS = {"VirtualMachine", "VirtualDesktop", "ApplicationInstance", "Database",
              "SoftwarePackage", "LoadBalancer"}
_ANY_CI = {"Server", "HypervisorHost", "VirtualMachine", "Cluster", "VirtualDesktop",
           "DesktopPool", "NetworkDevice", "LoadBalancer", "StorageVolume", "Database",
           "ApplicationInstance", "SoftwarePackage"}

# Which ends each type may join: CI class names, or SERVICE for a service.
RULES: dict[RelationType, tuple[set[str], set[str]]] = {
    RelationType.DEPENDS_ON: (_ANY_CI | {SERVICE}, _ANY_CI | {SERVICE}),
    RelationType.RUNS_ON: (_WORKLOADS, _COMPUTE_HOSTS),
    RelationType.MEMBER_OF: (_ANY_CI - {"Cluster", "DesktopPool"}, {"Cluster", "DesktopPool"}),
    RelationType.CONNECTS_TO: (_ANY_CI, _ANY_CI),
    RelationType.CONTAINS: (_ANY_CI, _ANY_CI),
    RelationType.USES: (_ANY_CI | {SERVICE}, _ANY_CI),
    RelationType.INSTALLED_ON: ({"SoftwarePackage"}, {"Server", "HypervisorHost",
                                                      "VirtualMachine", "VirtualDesktop"}),
}


def rule_violation(rel_type: RelationType, source_class: str, target_class: str) -> str | None:
    sources, targets = RULES[rel_type]
    if source_class not in sources:
        return f"a {_label(source_class)} cannot be the source of {rel_type.value}"
    if target_class not in targets:
        return f"{rel_type.value} cannot point to a {_label(target_class)}"
    return None


def _label(cls: str) -> str:
    return "service" if cls == SERVICE else cls


class Relation(FrozenModel):
    """One relationship seen from an item: its type, which way it points, and the other end."""

    type: RelationType
    direction: Direction
    depth: int
    source_id: str
    target_id: str
    properties: dict[str, Any] = {}
    created_at: datetime | None = None
    retired_at: datetime | None = None
    path: list[str] = []
    item: ConfigurationItem | Service


class RelationQuery(FrozenModel):
    """Arguments of a relationship field; hashable so loaders can batch equal ones."""

    direction: Direction = Direction.BOTH
    types: tuple[RelationType, ...] = ()
    depth: int = 1
    first: int = 50
    include_retired: bool = False
    with_org: bool = True  # read owner, cost centre and location of the related items
    visibility: Visibility = EVERYTHING  # the caller's scope


# ------------------------------------------------------------------------------ history


class HistoryKind(StrEnum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    STALE = "STALE"
    RETIRED = "RETIRED"
    MERGED = "MERGED"  # on the survivor
    MERGED_INTO = "MERGED_INTO"  # on the duplicate
    RELATION_CREATED = "RELATION_CREATED"
    RELATION_UPDATED = "RELATION_UPDATED"
    RELATION_RETIRED = "RELATION_RETIRED"


class AttributeChange(FrozenModel):
    attribute: str
    old: Any = None
    new: Any = None


class HistoryEntry(FrozenModel):
    item_id: str
    at: datetime
    source: str
    kind: HistoryKind
    changes: list[AttributeChange] = []
    relation_type: str | None = None
    other_id: str | None = None
    detail: dict[str, Any] = {}
