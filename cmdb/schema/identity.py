"""GraphQL views of people: users, roles, memberships, entitlements, desktops and sessions.

A user's own view (roles, entitlements, desktops, sessions, requests, environment health)
is readable by that user and by callers with ``identity:read``; for anyone else those fields
are null with a FORBIDDEN error. Nested fields go through the request's loaders.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

import strawberry
from strawberry import Info
from strawberry.scalars import JSON

from cmdb.core.clock import utcnow
from cmdb.identity.models import ComponentKind, EntitlementKind
from cmdb.identity.models import Entitlement as EntitlementModel
from cmdb.identity.models import EnvironmentHealth as EnvironmentHealthModel
from cmdb.identity.models import Membership as MembershipModel
from cmdb.identity.models import Role as RoleModel
from cmdb.identity.models import ServiceRequest as ServiceRequestModel
from cmdb.identity.models import User as UserModel
from cmdb.identity.principal import Forbidden, Permission
from cmdb.identity.service import can_read_everyone, may_read_user
from cmdb.items.models import ConfigurationItem as CIModel
from cmdb.schema.context import Context
from cmdb.schema.enums import OperationalState
from cmdb.schema.types import (
    ConfigurationItem,
    CostCentre,
    Item,
    OwnerGroup,
    PageInfo,
    UserError,
    item_view,
)
from cmdb.vdi.models import DesktopSession as SessionModel

strawberry.enum(EntitlementKind, description="What an entitlement grants.")
strawberry.enum(ComponentKind, description="What part of a user's environment a component is.")

DEFAULT_HISTORY_DAYS = 30


def _check_user(info: Info[Context, None], user_name: str) -> None:
    principal = info.context.principal
    if not may_read_user(principal, user_name):
        raise Forbidden(Permission.IDENTITY_READ, "read another user's view",
                        principal is None)


def _check_everyone(info: Info[Context, None], action: str) -> None:
    principal = info.context.principal
    if not can_read_everyone(principal):
        raise Forbidden(Permission.IDENTITY_READ, action, principal is None)


async def _ci(info: Info[Context, None], item_id: str | None) -> ConfigurationItem | None:
    if item_id is None:
        return None
    found = await info.context.loaders.items.load(item_id)
    return ConfigurationItem.from_model(found) if isinstance(found, CIModel) else None


@strawberry.type(description="A person who uses IT: their roles, desktops and history.")
class User:
    id: strawberry.ID
    user_name: str = strawberry.field(description="Unique; what a signed-in caller's name is.")
    display_name: str
    email: str | None
    active: bool
    created_at: datetime | None
    updated_at: datetime | None
    manager_id: strawberry.Private[str | None]
    cost_centre_id: strawberry.Private[str | None]

    @classmethod
    def from_model(cls, m: UserModel) -> User:
        return cls(id=strawberry.ID(m.id), user_name=m.user_name, display_name=m.display_name,
                   email=m.email, active=m.active, created_at=m.created_at,
                   updated_at=m.updated_at, manager_id=m.manager_id,
                   cost_centre_id=m.cost_centre_id)

    @strawberry.field(description="Who the user reports to.")
    async def manager(self, info: Info[Context, None]) -> User | None:
        if self.manager_id is None:
            return None
        found = await info.context.loaders.people.users.load(self.manager_id)
        return User.from_model(found) if found else None

    @strawberry.field(description="Who reports to the user.")
    async def direct_reports(self, info: Info[Context, None]) -> list[User] | None:
        _check_user(info, self.user_name)
        found = await info.context.loaders.people.direct_reports.load(str(self.id))
        return [User.from_model(u) for u in found]

    @strawberry.field
    async def cost_centre(self, info: Info[Context, None]) -> CostCentre | None:
        if self.cost_centre_id is None:
            return None
        unit = await info.context.loaders.org.load(self.cost_centre_id)
        return CostCentre.from_model(unit) if unit else None

    @strawberry.field(description="Cost centres this user owns.")
    async def managed_cost_centres(self, info: Info[Context, None]) -> list[CostCentre]:
        ids = await info.context.loaders.people.managed_cost_centre_ids.load(str(self.id))
        units = await info.context.loaders.org.load_many(ids)
        return [CostCentre.from_model(u) for u in units if u]

    @strawberry.field(description="Owner groups the user belongs to.")
    async def owner_groups(self, info: Info[Context, None]) -> list[OwnerGroup]:
        ids = await info.context.loaders.people.owner_group_ids.load(str(self.id))
        units = await info.context.loaders.org.load_many(ids)
        return [OwnerGroup.from_model(u) for u in units if u]

    @strawberry.field(description="Business roles, current ones unless includeEnded.")
    async def roles(
        self, info: Info[Context, None], include_ended: bool = False
    ) -> list[RoleMembership] | None:
        _check_user(info, self.user_name)
        found = await info.context.loaders.people.memberships("user", include_ended).load(
            str(self.id))
        return [RoleMembership.from_model(m) for m in found]

    @strawberry.field(description="Software and catalogue items the user may use, through "
                      "their current roles; grantedBy names the roles.")
    async def entitlements(self, info: Info[Context, None]) -> list[Entitlement] | None:
        _check_user(info, self.user_name)
        found = await info.context.loaders.people.entitlements(utcnow()).load(str(self.id))
        return [Entitlement.from_model(e) for e in found]

    @strawberry.field(description="Desktops the user is on now (an open session) or is "
                      "assigned, with the host each runs on now and its pool.")
    async def current_desktops(self, info: Info[Context, None]) -> list[UserDesktop] | None:
        _check_user(info, self.user_name)
        found = await info.context.loaders.people.current_desktops.load(str(self.id))
        return [UserDesktop(desktop_id=d["desktopId"], host_id=d["hostId"],
                            pool_id=d["poolId"], session_id=d["sessionId"], since=d["since"])
                for d in found]

    @strawberry.field(description="Orders the user placed in the catalogue, newest first.")
    async def service_requests(self, info: Info[Context, None]) -> list[ServiceRequest] | None:
        _check_user(info, self.user_name)
        found = await info.context.loaders.people.service_requests.load(str(self.id))
        return [ServiceRequest.from_model(o) for o in found]

    @strawberry.field(description="The worst rolled-up state of what the user's work rests "
                      "on: current desktops, their hosts and pools, and the services their "
                      "entitled software needs.")
    async def environment_health(self, info: Info[Context, None]) -> EnvironmentHealth | None:
        _check_user(info, self.user_name)
        found = await info.context.loaders.people.environment.load(str(self.id))
        return EnvironmentHealth.from_model(found)

    @strawberry.field(description="Desktop sessions overlapping [start, end), newest first "
                      "(default: the last 30 days). Kept against the user, so they outlive "
                      "the desktops.")
    async def sessions(
        self, info: Info[Context, None], start: datetime | None = None, end: datetime | None = None,
        first: int | None = None,
    ) -> list[DesktopSession] | None:
        _check_user(info, self.user_name)
        end = end or utcnow()
        start = start or end - timedelta(days=DEFAULT_HISTORY_DAYS)
        limit = info.context.services.vdi.check_period(start, end, first)
        found = await info.context.loaders.people.sessions(start, end, limit).load(str(self.id))
        return [DesktopSession.from_model(s) for s in found]


@strawberry.type(description="A business role (Trader, Payroll Clerk): its members over time "
                 "and what it entitles them to.")
class Role:
    id: strawberry.ID
    name: str
    description: str | None

    @classmethod
    def from_model(cls, m: RoleModel) -> Role:
        return cls(id=strawberry.ID(m.id), name=m.name, description=m.description)

    @strawberry.field(description="Members, current ones unless includeEnded.")
    async def members(
        self, info: Info[Context, None], include_ended: bool = False
    ) -> list[RoleMembership] | None:
        _check_everyone(info, "list the members of a role")
        found = await info.context.loaders.people.memberships("role", include_ended).load(
            str(self.id))
        return [RoleMembership.from_model(m) for m in found]

    @strawberry.field(description="Software packages and catalogue items the role grants.")
    async def entitlements(self, info: Info[Context, None]) -> list[Entitlement]:
        found = await info.context.loaders.people.role_entitlements.load(str(self.id))
        return [Entitlement.from_model(e) for e in found]


@strawberry.type(description="A user's membership of a role; until null is current.")
class RoleMembership:
    since: datetime | None
    until: datetime | None
    current: bool
    user_id: strawberry.Private[str]
    role_id: strawberry.Private[str]
    user_name: str
    role_name: str

    @classmethod
    def from_model(cls, m: MembershipModel) -> RoleMembership:
        return cls(since=m.since, until=m.until, current=m.current, user_id=m.user_id,
                   role_id=m.role_id, user_name=m.user_name, role_name=m.role_name)

    @strawberry.field
    async def user(self, info: Info[Context, None]) -> User | None:
        found = await info.context.loaders.people.users.load(self.user_id)
        return User.from_model(found) if found else None

    @strawberry.field
    async def role(self, info: Info[Context, None]) -> Role | None:
        found = await info.context.loaders.people.roles.load(self.role_id)
        return Role.from_model(found) if found else None


@strawberry.type(description="Something a user may use, and the roles that grant it.")
class Entitlement:
    target_id: strawberry.ID
    kind: EntitlementKind
    name: str
    granted_by: list[str] = strawberry.field(description="Names of the roles that grant it.")

    @classmethod
    def from_model(cls, m: EntitlementModel) -> Entitlement:
        return cls(target_id=strawberry.ID(m.target_id), kind=m.kind, name=m.name,
                   granted_by=list(m.granted_by))

    @strawberry.field(description="The software package CI (null for a catalogue item).")
    async def software_package(self, info: Info[Context, None]) -> ConfigurationItem | None:
        if self.kind is not EntitlementKind.SOFTWARE_PACKAGE:
            return None
        return await _ci(info, str(self.target_id))


@strawberry.type(description="A desktop a user is on now.")
class UserDesktop:
    desktop_id: strawberry.Private[str]
    host_id: strawberry.Private[str | None]
    pool_id: strawberry.Private[str | None]
    session_id: strawberry.ID | None = strawberry.field(
        description="The open session on it (null: assigned, not logged on).")
    since: datetime | None = strawberry.field(description="Logon time of that session.")

    @strawberry.field
    async def desktop(self, info: Info[Context, None]) -> ConfigurationItem | None:
        return await _ci(info, self.desktop_id)

    @strawberry.field(description="Where the desktop runs now (load balancing moves it).")
    async def host(self, info: Info[Context, None]) -> ConfigurationItem | None:
        return await _ci(info, self.host_id)

    @strawberry.field
    async def pool(self, info: Info[Context, None]) -> ConfigurationItem | None:
        return await _ci(info, self.pool_id)


@strawberry.type(description="One desktop session of a user. Desktop, host and pool names "
                 "are copied onto it; the CI fields resolve while those CIs exist.")
class DesktopSession:
    id: strawberry.ID
    session_key: str = strawberry.field(description="Broker name and its session id.")
    user_name: str
    desktop_name: str | None
    host_name: str | None
    pool_name: str | None
    start: datetime | None = strawberry.field(description="Logon (null: logoff seen first).")
    end: datetime | None = strawberry.field(description="Logoff (null: still logged on).")
    active: bool
    logon_seconds: float | None
    profile_load_seconds: float | None
    group_policy_seconds: float | None
    protocol: str | None
    client_name: str | None
    client_address: str | None
    sample_count: int
    round_trip_ms_avg: float | None
    round_trip_ms_max: float | None
    cpu_percent_avg: float | None
    desktop_id: strawberry.Private[str | None]
    host_id: strawberry.Private[str | None]
    pool_id: strawberry.Private[str | None]

    @classmethod
    def from_model(cls, m: SessionModel) -> DesktopSession:
        return cls(
            id=strawberry.ID(m.id), session_key=m.session_key, user_name=m.user_name,
            desktop_name=m.desktop_name, host_name=m.host_name, pool_name=m.pool_name,
            start=m.start, end=m.end, active=m.active, logon_seconds=m.logon_seconds,
            profile_load_seconds=m.profile_load_seconds,
            group_policy_seconds=m.group_policy_seconds, protocol=m.protocol,
            client_name=m.client_name, client_address=m.client_address,
            sample_count=m.sample_count, round_trip_ms_avg=m.round_trip_ms_avg,
            round_trip_ms_max=m.round_trip_ms_max, cpu_percent_avg=m.cpu_percent_avg,
            desktop_id=m.desktop_id, host_id=m.host_id, pool_id=m.pool_id,
        )

    @strawberry.field(description="The desktop CI, while it exists (retired ones too).")
    async def desktop(self, info: Info[Context, None]) -> ConfigurationItem | None:
        return await _ci(info, self.desktop_id)

    @strawberry.field
    async def host(self, info: Info[Context, None]) -> ConfigurationItem | None:
        return await _ci(info, self.host_id)

    @strawberry.field
    async def pool(self, info: Info[Context, None]) -> ConfigurationItem | None:
        return await _ci(info, self.pool_id)


@strawberry.type(description="One thing a user's environment rests on.")
class HealthComponent:
    kind: ComponentKind
    state: OperationalState
    reason: str
    item_id: strawberry.ID

    @strawberry.field
    async def item(self, info: Info[Context, None]) -> Item | None:
        found = await info.context.loaders.items.load(str(self.item_id))
        return item_view(found) if found else None


@strawberry.type(description="A user's environment health: the worst state of its parts "
                 "(UP when there is nothing to check).")
class EnvironmentHealth:
    state: OperationalState
    components: list[HealthComponent]

    @classmethod
    def from_model(cls, m: EnvironmentHealthModel) -> EnvironmentHealth:
        return cls(state=m.state, components=[
            HealthComponent(kind=c.kind, state=c.state, reason=c.reason,
                            item_id=strawberry.ID(c.item_id))
            for c in m.components])


@strawberry.type(description="An order the user placed in the service catalogue.")
class ServiceRequest:
    id: strawberry.ID
    status: str | None
    created_at: datetime | None
    properties: JSON = strawberry.field(description="Everything the catalogue stored on it.")

    @classmethod
    def from_model(cls, m: ServiceRequestModel) -> ServiceRequest:
        return cls(id=strawberry.ID(m.id), status=m.status, created_at=m.created_at,
                   properties=cast(JSON, m.properties))


@strawberry.type
class UserEdge:
    cursor: str
    node: User


@strawberry.type
class UserConnection:
    edges: list[UserEdge]
    page_info: PageInfo
    total_count: int | None


@strawberry.input(description="Filters of users; all given must match.")
class UserFilter:
    name_contains: str | None = strawberry.field(
        default=None, description="In the user name or display name, ignoring case.")
    role_name: str | None = strawberry.field(default=None,
                                             description="Current members of this role.")
    cost_centre_code: str | None = None
    manager_user_name: str | None = None
    active: bool | None = None


@strawberry.input
class CreateUserInput:
    user_name: str
    display_name: str
    email: str | None = None
    active: bool = True


@strawberry.input
class UpdateUserInput:
    user_name: str | None = None
    display_name: str | None = None
    email: str | None = None
    active: bool | None = None


@strawberry.input
class CreateRoleInput:
    name: str
    description: str | None = None


@strawberry.type
class UserPayload:
    user: User | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RolePayload:
    role: Role | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class MembershipPayload:
    membership: RoleMembership | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CostCentreOwnerPayload:
    cost_centre: CostCentre | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type(description="A user a failure reaches, ranked: worst state first, then the "
                 "most critical affected item, then the most reasons.")
class AffectedUser:
    rank: int
    user: User
    state: OperationalState
    roles: list[str] = strawberry.field(description="The user's current roles.")
    reasons: list[str] = strawberry.field(description="Why, worst first: an affected desktop "
                                          "(or its host or pool), or entitled software whose "
                                          "service is affected.")
    paths: list[list[str]] = strawberry.field(description="Item names from the failing item "
                                              "to the desktop or software, per reason.")


@strawberry.type(description="A role with affected members: worst state, then most members.")
class AffectedRole:
    rank: int
    role: str
    state: OperationalState
    user_names: list[str] = strawberry.field(description="Affected members, in user rank order.")


@strawberry.type(description="Who a failure reaches: users and their roles.")
class PeopleImpact:
    users: list[AffectedUser]
    roles: list[AffectedRole]
