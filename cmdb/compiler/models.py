"""What a compiled read is made of: a tree of specs, one per selected object, planned from the
operation's selection set (``plan``), rendered to one Cypher statement (``queries``) and used
again to pair the statement's values with the response keys (``shape``).

Specs are frozen and hashable: the Cypher text of a spec tree is rendered once and cached, and
parameter names are given in walk order, so equal shapes give equal trees whatever the values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The fields the compiler projects, by schema name (queries.py holds their Cypher).
PLAIN = frozenset({"id", "name", "description", "lifecycleStatus", "operationalState",
                   "criticality", "source", "mergedInto", "retiredReason"})
DATETIMES = frozenset({"createdAt", "updatedAt", "retiredAt", "lastSeenAt", "staleSince"})
COMPUTED = frozenset({"healthState", "ciClass", "families", "attributes", "kind",
                      "costRecovery", "inMaintenance", "__typename"})
ITEM_SCALARS = PLAIN | DATETIMES | COMPUTED
OBJECT_FIELDS: dict[str, frozenset[str]] = {
    "identifiers": frozenset({"serialNumber", "hostName", "domain", "macAddress",
                              "cloudInstanceId", "fqdn"}),
    "sla": frozenset({"availabilityTarget", "responseTargetMinutes", "restoreTargetMinutes",
                      "maintenanceWindows"}),
    "businessValue": frozenset({"revenuePerHour", "users"}),
}
ORG_UNIT_TYPES = {"ownerGroup": "OwnerGroup", "costCentre": "CostCentre",
                  "location": "Location"}
ORG_FIELDS = frozenset({"id", "name", "description", "email", "code", "parent"})
ORG_LISTS = {"ownerGroups": "OwnerGroup", "costCentres": "CostCentre",
             "locations": "Location"}
RELATION_SCALARS = frozenset({"type", "direction", "depth", "sourceId", "targetId",
                              "properties", "createdAt", "retiredAt", "path", "__typename"})
DECIMALS = frozenset({"availabilityTarget", "revenuePerHour"})


class Cannot(Exception):
    """The operation has something the compiler does not compile: resolvers answer it."""


@dataclass(frozen=True)
class FieldSpec:
    """One selected field: its response key, its schema name and what is below it."""

    key: str
    name: str
    sub: Any = None  # ObjectSpec | ItemSpec | RelationSpec | None


@dataclass(frozen=True)
class ObjectSpec:
    """A plain object under an item (identifiers, sla, businessValue, an org unit)."""

    type_name: str
    fields: tuple[FieldSpec, ...]


@dataclass(frozen=True)
class ItemSpec:
    """An item's selection per concrete type; None where the type cannot occur."""

    ci: tuple[FieldSpec, ...] | None
    service: tuple[FieldSpec, ...] | None


@dataclass(frozen=True)
class RelationSpec:
    """``relationships(...)`` of an item (arguments as planned)."""

    direction: str  # OUTGOING, INCOMING or BOTH
    depth: int
    types: tuple[str, ...]
    include_retired: bool
    first: str  # parameter name
    fields: tuple[FieldSpec, ...]


@dataclass(frozen=True)
class LookupSpec:
    """A root field reading one item by id."""

    label: str | None  # CI, Service or None (any item)
    id_param: str
    item: ItemSpec


@dataclass(frozen=True)
class ConnectionSpec:
    """A root connection of items: its list pieces come from ``core.cypher.list_parts``
    with parameters renamed under ``prefix``."""

    type_name: str  # ConfigurationItemConnection or ServiceConnection
    label: str
    prefix: str
    where: tuple[str, ...]
    page_where: tuple[str, ...]
    order: str
    sort_prop: str
    want_total: bool
    want_cursor: bool
    fields: tuple[FieldSpec, ...]
    item: ItemSpec | None


@dataclass(frozen=True)
class OrgListSpec:
    """A root list of org units, by name, with an optional name filter."""

    label: str
    name_param: str
    limit_param: str
    unit: ObjectSpec


@dataclass(frozen=True)
class RootSpec:
    key: str
    spec: LookupSpec | ConnectionSpec | OrgListSpec | str  # str: a constant (__typename)


@dataclass
class Plan:
    """A planned operation: its roots, the parameters of this request and, for connections,
    how to page their rows."""

    roots: tuple[RootSpec, ...]
    params: dict[str, Any] = field(default_factory=dict)
    pages: dict[str, Any] = field(default_factory=dict)  # root key -> PageRequest
    # Variables whose value goes to parameters unchanged (a lookup's id): variable ->
    # parameter names. A cached plan takes them from each request.
    bindings: dict[str, list[str]] = field(default_factory=dict)
