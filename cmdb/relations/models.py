from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from cmdb.identity.scope import EVERYTHING, Visibility
from cmdb.inventory.models import ConfigurationItem
from cmdb.servicemodel.models import Service


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


class Relation(BaseModel):
    """One relationship seen from an item: its type, which way it points, and the other end."""

    model_config = ConfigDict(frozen=True)

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


class RelationQuery(BaseModel):
    """Arguments of a relationship field; hashable so loaders can batch equal ones."""

    model_config = ConfigDict(frozen=True)

    direction: Direction = Direction.BOTH
    types: tuple[RelationType, ...] = ()
    depth: int = 1
    first: int = 50
    include_retired: bool = False
    with_org: bool = True  # read owner, cost centre and location of the related items
    visibility: Visibility = EVERYTHING  # the caller's scope
