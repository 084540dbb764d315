"""People: users, business roles with dated membership, managers, cost centres, entitlements.

Graph model (other areas read it; keep the names):

    (:User {id, userName, userNameLower, displayName, email, active, createdAt, updatedAt})
    (u:User)-[:REPORTS_TO]->(m:User)                    manager
    (u:User)-[:IN_COST_CENTRE]->(cc:Org:CostCentre)     cost centre
    (cc:CostCentre)-[:MANAGED_BY]->(u:User)             cost-centre owner
    (u:User)-[:MEMBER_OF_GROUP]->(g:Org:OwnerGroup)     owner-group membership
    (:Role {id, name, nameLower, description, createdAt, updatedAt})
    (u:User)-[:HAS_ROLE {since, until}]->(r:Role)       until null: current
    (r:Role)-[:ENTITLED_TO {since}]->(x)                x: a SoftwarePackage CI or a CatalogueItem

A user inherits the entitlements of the roles they are a current member of; the reason is the
role. ``userName`` is unique, and also unique ignoring case (feeds spell names loosely);
a request principal's ``user`` is a ``userName``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cmdb.core.models import FrozenModel, OperationalState
from cmdb.core.validation import stripped_non_blank

_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def check_user_name(v: str) -> str:
    v = v.strip()
    if not _USER_NAME.match(v):
        raise ValueError("user name must be 1-64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return v


def _aware(v: datetime | None) -> datetime | None:
    if v is None:
        return None
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v


class User(FrozenModel):
    id: str
    user_name: str
    display_name: str
    email: str | None = None
    active: bool = True
    created_at: datetime | None = None
    updated_at: datetime | None = None
    manager_id: str | None = None
    cost_centre_id: str | None = None


class UserWrite(BaseModel):
    """Fields of a new user (all) or of an update (those given)."""

    model_config = ConfigDict(extra="forbid")

    user_name: str = Field(min_length=1, max_length=64)
    display_name: Annotated[str, stripped_non_blank("display name must not be blank")] = Field(
        min_length=1, max_length=200)
    email: str | None = Field(None, max_length=254)
    active: bool = True

    @field_validator("user_name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_user_name(v)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip()
        if not _EMAIL.match(v):
            raise ValueError("email must look like name@domain.tld")
        return v


class Role(FrozenModel):
    id: str
    name: str
    description: str | None = None


class RoleWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, stripped_non_blank("role name must not be blank")] = Field(
        min_length=1, max_length=100)
    description: str | None = Field(None, max_length=2000)


class Membership(FrozenModel):
    """One membership of a user in a role; ``until`` None is current."""

    user_id: str
    user_name: str
    role_id: str
    role_name: str
    since: datetime | None = None  # unknown for memberships recorded without it
    until: datetime | None = None

    @property
    def current(self) -> bool:
        return self.until is None


class MembershipDates(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: datetime | None = None
    until: datetime | None = None

    @field_validator("since", "until")
    @classmethod
    def _tz(cls, v: datetime | None) -> datetime | None:
        return _aware(v)


class EntitlementKind(StrEnum):
    SOFTWARE_PACKAGE = "SOFTWARE_PACKAGE"
    CATALOGUE_ITEM = "CATALOGUE_ITEM"


class Entitlement(FrozenModel):
    """Something a user may use, and the current roles that grant it."""

    target_id: str
    kind: EntitlementKind
    name: str
    granted_by: list[str]


class UserQuery(FrozenModel):
    """Filters of the users list; all given must match."""

    name_contains: str | None = None  # user name or display name
    role_name: str | None = None  # current members of this role
    cost_centre_code: str | None = None
    manager_user_name: str | None = None
    active: bool | None = None


class ComponentKind(StrEnum):
    DESKTOP = "DESKTOP"
    HOST = "HOST"
    POOL = "POOL"
    SERVICE = "SERVICE"


class HealthComponent(FrozenModel):
    """One thing a user's environment rests on, with its rolled-up state and why it counts."""

    kind: ComponentKind
    item_id: str
    name: str
    state: OperationalState
    reason: str


class EnvironmentHealth(FrozenModel):
    state: OperationalState
    components: list[HealthComponent]


class ServiceRequest(FrozenModel):
    """An order placed by (``REQUESTED_BY``) the user, as the catalogue stored it."""

    id: str
    status: str | None = None
    created_at: datetime | None = None
    properties: dict[str, object] = {}


class AffectedUser(FrozenModel):
    """A user a failure reaches: through their desktop, or software whose service fails."""

    rank: int
    user: User
    state: OperationalState
    roles: list[str]
    reasons: list[str]
    paths: list[list[str]]  # item names from the failing item to the user's desktop/service


class AffectedRole(FrozenModel):
    rank: int
    role: str
    state: OperationalState
    users: list[str]  # user names, in user rank order
