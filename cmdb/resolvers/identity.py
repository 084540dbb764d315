"""Root fields for people: users, roles and their administration. Permissions are checked
by the identity service with the request's principal."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry import Info

from cmdb.identity.models import UserQuery
from cmdb.identity.service import IdentityService
from cmdb.resolvers.payloads import errors_in
from cmdb.schema.context import Context
from cmdb.schema.identity import (
    AffectedRole,
    AffectedUser,
    CostCentreOwnerPayload,
    CreateRoleInput,
    CreateUserInput,
    MembershipPayload,
    PeopleImpact,
    Role,
    RoleMembership,
    RolePayload,
    UpdateUserInput,
    User,
    UserConnection,
    UserEdge,
    UserFilter,
    UserPayload,
)
from cmdb.schema.inputs import to_dict
from cmdb.schema.types import CostCentre, PageInfo, wants_total


def _identity(info: Info[Context, None]) -> IdentityService:
    service: IdentityService = info.context.services.identity
    return service


@strawberry.type
class IdentityQuery:
    @strawberry.field(description="A user by user name (case ignored). Anyone signed in may "
                      "read themselves; others need identity:read (null otherwise).")
    async def user(self, info: Info[Context, None], user_name: str) -> User | None:
        found = await _identity(info).user(user_name, info.context.principal)
        return User.from_model(found) if found else None

    @strawberry.field(description="The signed-in caller as a user (null when not a user).")
    async def me(self, info: Info[Context, None]) -> User | None:
        principal = info.context.principal
        if principal is None:
            return None
        found = await _identity(info).user(principal.user, principal)
        return User.from_model(found) if found else None

    @strawberry.field(description="Users by user name, a page at a time. Callers without "
                      "identity:read see only themselves.")
    async def users(
        self, info: Info[Context, None], filter: UserFilter | None = None,
        first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None,
    ) -> UserConnection:
        f = UserQuery(**to_dict(filter)) if filter is not None else UserQuery()
        page = await _identity(info).users(f, info.context.principal, first, after, last,
                                           before, wants_total(info))
        return UserConnection(
            edges=[UserEdge(cursor=c, node=User.from_model(u)) for c, u in page.items],
            page_info=PageInfo(
                has_next_page=page.has_next_page, has_previous_page=page.has_previous_page,
                start_cursor=page.items[0][0] if page.items else None,
                end_cursor=page.items[-1][0] if page.items else None),
            total_count=page.total_count,
        )

    @strawberry.field(description="Business roles by name (needs identity:read).")
    async def roles(
        self, info: Info[Context, None], name_contains: str | None = None, first: int | None = None
    ) -> list[Role]:
        found = await _identity(info).roles(info.context.principal, name_contains, first)
        return [Role.from_model(r) for r in found]

    @strawberry.field(description="A business role by name, case ignored (needs "
                      "identity:read).")
    async def role(self, info: Info[Context, None], name: str) -> Role | None:
        found = await _identity(info).role(name, info.context.principal)
        return Role.from_model(found) if found else None


    @strawberry.field(description="Bottom-up impact on people: the users whose current "
                      "desktops (or their hosts or pools) or whose entitled software's "
                      "services the given items take down or degrade, ranked with their "
                      "roles, each with the paths that explain it (needs identity:read). "
                      "assumeDown asks what-if without storing anything.")
    async def people_impact(
        self, info: Info[Context, None], ids: list[strawberry.ID], assume_down: bool = False,
        at: datetime | None = None,
    ) -> PeopleImpact:
        users, roles = await _identity(info).impact(
            info.context.services.health, [str(i) for i in ids], info.context.principal,
            assume_down, at)
        return PeopleImpact(
            users=[AffectedUser(rank=u.rank, user=User.from_model(u.user), state=u.state,
                                roles=u.roles, reasons=u.reasons, paths=u.paths)
                   for u in users],
            roles=[AffectedRole(rank=r.rank, role=r.role, state=r.state, user_names=r.users)
                   for r in roles],
        )


@strawberry.type
class IdentityMutation:
    @strawberry.mutation(description="Create a user (needs identity:write).")
    @errors_in(UserPayload)
    async def create_user(self, info: Info[Context, None], input: CreateUserInput) -> UserPayload:
        user = await _identity(info).create_user(to_dict(input), info.context.principal)
        return UserPayload(user=User.from_model(user))

    @strawberry.mutation(description="Change the given fields of a user (needs "
                         "identity:write).")
    @errors_in(UserPayload)
    async def update_user(
        self, info: Info[Context, None], user_name: str, input: UpdateUserInput
    ) -> UserPayload:
        user = await _identity(info).update_user(user_name, to_dict(input), info.context.principal)
        return UserPayload(user=User.from_model(user))

    @strawberry.mutation(description="Set (or with null clear) who a user reports to; "
                         "cycles are refused.")
    @errors_in(UserPayload)
    async def set_manager(
        self, info: Info[Context, None], user_name: str, manager_user_name: str | None = None
    ) -> UserPayload:
        user = await _identity(info).set_manager(
            user_name, manager_user_name, info.context.principal)
        return UserPayload(user=User.from_model(user))

    @strawberry.mutation(description="Set (or with null clear) a user's cost centre.")
    @errors_in(UserPayload)
    async def set_user_cost_centre(
        self, info: Info[Context, None], user_name: str, cost_centre_code: str | None = None
    ) -> UserPayload:
        user = await _identity(info).set_cost_centre(
            user_name, cost_centre_code, info.context.principal)
        return UserPayload(user=User.from_model(user))

    @strawberry.mutation(description="Set the owner groups a user belongs to (replaces them).")
    @errors_in(UserPayload)
    async def set_user_owner_groups(
        self, info: Info[Context, None], user_name: str, owner_group_ids: list[strawberry.ID]
    ) -> UserPayload:
        user = await _identity(info).set_owner_groups(
            user_name, [str(i) for i in owner_group_ids], info.context.principal)
        return UserPayload(user=User.from_model(user))

    @strawberry.mutation(description="Make a user the owner of a cost centre (null: none).")
    @errors_in(CostCentreOwnerPayload)
    async def set_cost_centre_owner(
        self, info: Info[Context, None], cost_centre_code: str, user_name: str | None = None
    ) -> CostCentreOwnerPayload:
        cc_id = await _identity(info).set_cost_centre_manager(
            cost_centre_code, user_name, info.context.principal)
        unit = await info.context.loaders.org.load(cc_id)
        return CostCentreOwnerPayload(cost_centre=CostCentre.from_model(unit) if unit else None)

    @strawberry.mutation(description="Create a business role (needs identity:write).")
    @errors_in(RolePayload)
    async def create_role(self, info: Info[Context, None], input: CreateRoleInput) -> RolePayload:
        role = await _identity(info).create_role(to_dict(input), info.context.principal)
        return RolePayload(role=Role.from_model(role))

    @strawberry.mutation(description="Make a user a member of a role from `since` "
                         "(default now; not in the future).")
    @errors_in(MembershipPayload)
    async def add_role_membership(
        self, info: Info[Context, None], user_name: str, role_name: str,
        since: datetime | None = None,
    ) -> MembershipPayload:
        m = await _identity(info).add_membership(
            user_name, role_name, since, info.context.principal)
        return MembershipPayload(membership=RoleMembership.from_model(m))

    @strawberry.mutation(description="End a user's current membership of a role at `until` "
                         "(default now; not in the future). The membership is kept.")
    @errors_in(MembershipPayload)
    async def end_role_membership(
        self, info: Info[Context, None], user_name: str, role_name: str,
        until: datetime | None = None,
    ) -> MembershipPayload:
        m = await _identity(info).end_membership(
            user_name, role_name, until, info.context.principal)
        return MembershipPayload(membership=RoleMembership.from_model(m))

    @strawberry.mutation(description="Entitle a role to a software package CI or a catalogue "
                         "item; its current members inherit it.")
    @errors_in(RolePayload)
    async def entitle_role(
        self, info: Info[Context, None], role_name: str, target_id: strawberry.ID
    ) -> RolePayload:
        role = await _identity(info).entitle(role_name, str(target_id), info.context.principal)
        return RolePayload(role=Role.from_model(role))

    @strawberry.mutation(description="Take an entitlement away from a role.")
    @errors_in(RolePayload)
    async def revoke_role_entitlement(
        self, info: Info[Context, None], role_name: str, target_id: strawberry.ID
    ) -> RolePayload:
        role = await _identity(info).entitle(
            role_name, str(target_id), info.context.principal, revoke=True)
        return RolePayload(role=Role.from_model(role))
