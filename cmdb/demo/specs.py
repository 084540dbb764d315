"""The shapes of the demo enterprise's data: each thing refers to others by a stable key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cmdb.core.models import Criticality, OrgKind
from cmdb.items.models import CIClass, RelationType, ServiceKind


@dataclass(frozen=True)
class OrgSpec:
    kind: OrgKind
    name: str
    code: str | None = None  # cost centres only; their key
    parent: str | None = None  # key of the parent unit of the same kind
    email: str | None = None
    description: str | None = None

    @property
    def key(self) -> str:
        return self.code if self.kind is OrgKind.COST_CENTRE and self.code else self.name


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    kind: ServiceKind
    criticality: Criticality
    owner: str  # owner group name
    cost_centre: str  # cost centre code
    location: str  # location name
    description: str
    sla: Mapping[str, Any] = field(default_factory=dict)
    business_value: Mapping[str, Any] = field(default_factory=dict)
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CISpec:
    name: str
    ci_class: CIClass
    criticality: Criticality
    owner: str
    cost_centre: str
    location: str
    identifiers: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, Any] = field(default_factory=dict)
    description: str | None = None


@dataclass(frozen=True)
class RelSpec:
    source: str  # the consumer
    type: RelationType
    target: str  # the provider
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UserSpec:
    user_name: str
    display_name: str
    cost_centre: str  # code
    roles: tuple[str, ...]
    manager: str | None = None  # user name
    owns: tuple[str, ...] = ()  # cost centre codes this user owns
    owner_groups: tuple[str, ...] = ()

    @property
    def email(self) -> str:
        return f"{self.user_name.lower()}@corp.example"


@dataclass(frozen=True)
class RoleSpec:
    name: str
    description: str
    entitled_to: tuple[str, ...]  # software package names
