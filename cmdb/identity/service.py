"""Use cases for people: read users and roles (the user view), and administer them.

Reading needs ``identity:read``, except that anyone signed in may read themselves: the
scope is part of the list query (callers without the permission see only themselves, in
lists and counts alike). Writing needs ``identity:write``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from cmdb.core.clock import utcnow
from cmdb.core.models import (
    DomainError,
    NotFound,
    OperationalState,
)
from cmdb.core.pagination import (
    Page,
    check_page_size,
    encode_cursor,
    keyset_page,
    page_request,
)
from cmdb.core.validation import validate
from cmdb.db.driver import CountingTx, Database
from cmdb.identity.impact import (
    ImpactReader,
    affected_items,
    rank_roles,
    rank_users,
    reasons_per_user,
    worst,
)
from cmdb.identity.models import (
    AffectedRole,
    AffectedUser,
    ComponentKind,
    EnvironmentHealth,
    HealthComponent,
    Membership,
    MembershipDates,
    Role,
    RoleWrite,
    User,
    UserQuery,
    UserWrite,
)
from cmdb.identity.principal import (
    Forbidden,
    Permission,
    Principal,
    has_permission,
    require_permission,
)
from cmdb.identity.repository import IdentityRepository
from cmdb.settings import Settings

# How far ahead of our clock a membership date may be (clock skew of the caller).
MAX_CLOCK_SKEW = timedelta(minutes=5)
_USER_FIELDS = {"user_name": "userName", "display_name": "displayName", "email": "email",
                "active": "active"}


def can_read_everyone(principal: Principal | None) -> bool:
    return has_permission(principal, Permission.IDENTITY_READ)


def may_read_user(principal: Principal | None, user_name: str) -> bool:
    """Whether the caller may see this user's view (their own, or everyone's)."""
    if principal is None:
        return False
    return can_read_everyone(principal) or principal.user == user_name


def require_read(principal: Principal | None, what: str = "read users and roles") -> None:
    require_permission(principal, Permission.IDENTITY_READ, what)


def _membership_date(field: str, given: datetime | None, in_future: str) -> datetime:
    """A membership's ``since`` or ``until`` (default now), refused (``in_future``) when
    later than now allowing for clock skew."""
    now = utcnow()
    when: datetime | None = getattr(validate(MembershipDates, {field: given}, prefix=""), field)
    when = when or now
    if when > now + MAX_CLOCK_SKEW:
        raise DomainError.single(field, in_future)
    return when


class IdentityService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.repo = IdentityRepository(db)

    # --- reading ----------------------------------------------------------------------------

    async def user(self, user_name: str, principal: Principal | None) -> User | None:
        """A user by user name (case ignored); None when not found or not visible."""
        if principal is None:
            raise Forbidden(Permission.IDENTITY_READ, "read users", anonymous=True)
        found = (await self.repo.users_by_name([user_name])).get(user_name)
        # Someone else, for a caller who may only read themselves: the same answer as for a
        # user who does not exist.
        if found is None or not may_read_user(principal, found.user_name):
            return None
        return found

    async def users(
        self, f: UserQuery, principal: Principal | None, first: int | None, after: str | None,
        last: int | None, before: str | None, want_total: bool,
    ) -> Page[User]:
        if principal is None:
            raise Forbidden(Permission.IDENTITY_READ, "list users", anonymous=True)
        page = page_request(first, after, last, before, self.settings.default_page_size,
                            self.settings.max_page_size)
        self_only = None if can_read_everyone(principal) else principal.user
        rows, total = await self.repo.list_users(
            f, page.size + 1, page.forward, page.cursor, want_total, self_only)
        return keyset_page(rows, page, lambda u: (encode_cursor(u.user_name.lower(), u.id), u),
                           total)

    async def role(self, name: str, principal: Principal | None) -> Role | None:
        require_read(principal)
        return (await self.repo.roles_by_name([name])).get(name)

    async def roles(
        self, principal: Principal | None, name_contains: str | None, first: int | None
    ) -> list[Role]:
        require_read(principal)
        limit = first if first is not None else self.settings.default_page_size
        check_page_size(limit, self.settings.max_page_size)
        return await self.repo.list_roles(name_contains, limit)

    async def environment_health(self, user_ids: list[str]) -> list[EnvironmentHealth]:
        """Per user: the worst rolled-up state of their current desktops, the hosts and pools
        under them, and the services their entitled software needs (three round trips)."""
        now = utcnow()
        desktops = await self.repo.current_desktops(user_ids)
        services = await self.repo.needed_services(user_ids, now)
        item_ids = sorted({i for ds in desktops.values() for d in ds
                           for i in (d["desktopId"], d["hostId"], d["poolId"]) if i})
        states = await self.repo.item_states(item_ids) if item_ids else {}
        out = []
        for uid in user_ids:
            components: list[HealthComponent] = []
            seen: set[tuple[ComponentKind, str]] = set()
            for d in desktops.get(uid, []):
                desk = states.get(d["desktopId"])
                desk_name = desk["name"] if desk else d["desktopId"]
                for kind, item_id, reason in (
                    (ComponentKind.DESKTOP, d["desktopId"], "your desktop"),
                    (ComponentKind.HOST, d["hostId"], f"runs {desk_name}"),
                    (ComponentKind.POOL, d["poolId"], f"pool of {desk_name}"),
                ):
                    row = states.get(item_id) if item_id else None
                    if row is None or (kind, item_id) in seen:
                        continue
                    seen.add((kind, item_id))
                    components.append(HealthComponent(
                        kind=kind, item_id=item_id, name=row["name"],
                        state=OperationalState(row["state"]), reason=reason))
            for s in services.get(uid, []):
                components.append(HealthComponent(
                    kind=ComponentKind.SERVICE, item_id=s["serviceId"], name=s["name"],
                    state=OperationalState(s["state"]),
                    reason="needed by " + ", ".join(sorted(s["packages"]))))
            out.append(EnvironmentHealth(state=worst([c.state for c in components]),
                                         components=components))
        return out

    async def impact(
        self, health: ImpactReader, ids: list[str], principal: Principal | None,
        assume_down: bool = False, at: datetime | None = None,
    ) -> tuple[list[AffectedUser], list[AffectedRole]]:
        """The users and roles a failure of ``ids`` reaches, ranked: users whose current
        desktops (or their hosts or pools) are affected, and users whose entitled software
        needs an affected service. Each user comes with the reasons and the paths that
        explain them; roles with their affected members. ``assume_down`` treats the items as
        down without storing anything (what-if)."""
        require_read(principal, "see which users a failure affects")
        entries = await health.impact(ids, services_only=False, assume_down=assume_down, at=at)
        own = await self.repo.item_states(ids)
        affected = affected_items(entries, ids, own, assume_down)
        if not affected:
            return [], []
        item_ids = sorted(affected)
        reasons = reasons_per_user(
            affected, await self.repo.users_by_desktop_items(item_ids),
            await self.repo.users_by_needed_services(item_ids, utcnow()))
        user_ids = sorted(reasons)
        users = rank_users(reasons, await self.repo.users_by_id(user_ids),
                           await self.repo.current_role_names(user_ids))
        return users, rank_roles(users)

    # --- users: writing ---------------------------------------------------------------------

    async def create_user(self, data: dict[str, Any], principal: Principal | None) -> User:
        require_permission(principal, Permission.IDENTITY_WRITE, "create users")
        spec = validate(UserWrite, data)
        props = {_USER_FIELDS[k]: v for k, v in spec.model_dump().items()}
        props["userNameLower"] = spec.user_name.lower()
        user_id = str(uuid.uuid4())

        async def work(tx: CountingTx) -> User:
            await self._check_name_free(tx, spec.user_name, user_id)
            return await self.repo.write_user(tx, user_id, props, utcnow(), create=True)

        return await self.db.write_tx(work)

    async def update_user(
        self, user_name: str, data: dict[str, Any], principal: Principal | None
    ) -> User:
        require_permission(principal, Permission.IDENTITY_WRITE, "change users")
        given = {k: v for k, v in data.items() if v is not None}
        if not given:
            raise DomainError.single("input", "give at least one field to change")

        async def work(tx: CountingTx) -> User:
            found = await self._locked_user(tx, user_name)
            current = await self.repo.user_in_tx(tx, found["id"])
            merged = {"user_name": current.user_name, "display_name": current.display_name,
                      "email": current.email, "active": current.active, **given}
            spec = validate(UserWrite, merged)
            if spec.user_name != current.user_name:
                await self._check_name_free(tx, spec.user_name, current.id)
            props = {_USER_FIELDS[k]: getattr(spec, k) for k in given}
            if "userName" in props:
                props["userNameLower"] = spec.user_name.lower()
            return await self.repo.write_user(tx, current.id, props, utcnow(), create=False)

        return await self.db.write_tx(work)

    async def _check_name_free(self, tx: CountingTx, user_name: str, user_id: str) -> None:
        holder = await self.repo.name_holder(tx, user_name, user_id)
        if holder is not None:
            raise DomainError.single("input.userName",
                                     f"user name {user_name!r} is taken by {holder!r}",
                                     "CONFLICT")

    async def _change_user(
        self, user_name: str, change: Callable[[CountingTx, str], Awaitable[None]],
        principal: Principal | None, action: str,
    ) -> User:
        """Lock a user, ``change`` them (given their id) and read them back, in one write;
        ``action`` needs identity:write."""
        require_permission(principal, Permission.IDENTITY_WRITE, action)

        async def work(tx: CountingTx) -> User:
            user_id = (await self._locked_user(tx, user_name))["id"]
            await change(tx, user_id)
            return await self.repo.user_in_tx(tx, user_id)

        return await self.db.write_tx(work)

    async def set_manager(
        self, user_name: str, manager_user_name: str | None, principal: Principal | None
    ) -> User:

        async def change(tx: CountingTx, user_id: str) -> None:
            manager_id = None
            if manager_user_name is not None:
                manager = await self.repo.lock_user(tx, manager_user_name)
                if manager is None:
                    raise NotFound("user", manager_user_name, "managerUserName")
                manager_id = manager["id"]
                if user_id in await self.repo.managers_above(tx, manager_id):
                    raise DomainError.single(
                        "managerUserName", f"{manager_user_name!r} reports to "
                        f"{user_name!r} (directly or not): that would be a cycle", "CONFLICT")
            await self.repo.set_manager(tx, user_id, manager_id, utcnow())

        return await self._change_user(user_name, change, principal, "set managers")

    async def set_cost_centre(
        self, user_name: str, code: str | None, principal: Principal | None
    ) -> User:

        async def change(tx: CountingTx, user_id: str) -> None:
            cc_id = await self._cost_centre_id(tx, code) if code is not None else None
            await self.repo.set_cost_centre(tx, user_id, cc_id, utcnow())

        return await self._change_user(user_name, change, principal, "set cost centres")

    async def set_cost_centre_manager(
        self, code: str, user_name: str | None, principal: Principal | None
    ) -> str:
        """Make a user the owner of a cost centre (None: no owner); returns its id."""
        require_permission(principal, Permission.IDENTITY_WRITE, "set cost-centre owners")

        async def work(tx: CountingTx) -> str:
            cc_id = await self._cost_centre_id(tx, code)
            user_id = (await self._locked_user(tx, user_name))["id"] if user_name else None
            await self.repo.set_cost_centre_manager(tx, cc_id, user_id)
            return cc_id

        return await self.db.write_tx(work)

    async def set_owner_groups(
        self, user_name: str, group_ids: list[str], principal: Principal | None
    ) -> User:
        ids = list(dict.fromkeys(group_ids))

        async def change(tx: CountingTx, user_id: str) -> None:
            missing = sorted(set(ids) - set(await self.repo.found_owner_groups(tx, ids)))
            if missing:
                raise DomainError.single("ownerGroupIds", "owner groups not found: "
                                         + ", ".join(missing), "NOT_FOUND")
            await self.repo.set_owner_groups(tx, user_id, ids, utcnow())

        return await self._change_user(user_name, change, principal, "set owner groups")

    async def _locked_user(self, tx: CountingTx, user_name: str) -> dict[str, Any]:
        found = await self.repo.lock_user(tx, user_name)
        if found is None:
            raise NotFound("user", user_name, "userName")
        return found

    async def _cost_centre_id(self, tx: CountingTx, code: str) -> str:
        cc_id = await self.repo.cost_centre_id(tx, code)
        if cc_id is None:
            raise NotFound("cost centre", code, "costCentreCode")
        return cc_id

    # --- roles: writing ---------------------------------------------------------------------

    async def create_role(self, data: dict[str, Any], principal: Principal | None) -> Role:
        require_permission(principal, Permission.IDENTITY_WRITE, "create roles")
        spec = validate(RoleWrite, data)

        async def work(tx: CountingTx) -> Role:
            taken = await self.repo.role_name_holder(tx, spec.name)
            if taken is not None:
                raise DomainError.single("input.name", f"a role named {taken!r} exists",
                                         "CONFLICT")
            return await self.repo.create_role(tx, str(uuid.uuid4()), spec.name,
                                               spec.description, utcnow())

        return await self.db.write_tx(work)

    async def _role(self, tx: CountingTx, name: str) -> Role:
        role = await self.repo.role_in_tx(tx, name)
        if role is None:
            raise NotFound("role", name, "roleName")
        return role

    async def _spans(
        self, tx: CountingTx, user_name: str, role_name: str
    ) -> tuple[dict[str, Any], Role, list[dict[str, datetime | None]]]:
        """The locked user, the role, and the user's spans in it."""
        user = await self._locked_user(tx, user_name)
        role = await self._role(tx, role_name)
        return user, role, await self.repo.lock_memberships(tx, user["id"], role.id)

    async def add_membership(
        self, user_name: str, role_name: str, since: datetime | None,
        principal: Principal | None,
    ) -> Membership:
        """Make a user a current member of a role from ``since`` (default now)."""
        require_permission(principal, Permission.IDENTITY_WRITE, "change role membership")
        start = _membership_date("since", since, "since must not be in the future")

        async def work(tx: CountingTx) -> Membership:
            user, role, spans = await self._spans(tx, user_name, role_name)
            if any(s["until"] is None for s in spans):
                raise DomainError.single("roleName", f"{user['userName']!r} is already a "
                                         f"member of {role.name!r}", "CONFLICT")
            latest_end = max((s["until"] for s in spans if s["until"]), default=None)
            if latest_end is not None and start < latest_end:
                raise DomainError.single("since", "since overlaps an earlier membership "
                                         f"(ended {latest_end.isoformat()})", "CONFLICT")
            await self.repo.add_membership(tx, user["id"], role.id, start)
            return Membership(user_id=user["id"], user_name=user["userName"], role_id=role.id,
                              role_name=role.name, since=start)

        return await self.db.write_tx(work)

    async def end_membership(
        self, user_name: str, role_name: str, until: datetime | None,
        principal: Principal | None,
    ) -> Membership:
        """End a user's current membership of a role at ``until`` (default now)."""
        require_permission(principal, Permission.IDENTITY_WRITE, "change role membership")
        end = _membership_date("until", until, "until must not be in the future; end the "
                               "membership when it ends")

        async def work(tx: CountingTx) -> Membership:
            user, role, spans = await self._spans(tx, user_name, role_name)
            current = [s for s in spans if s["until"] is None]
            if not current:
                raise DomainError.single("roleName", f"{user['userName']!r} is not a current "
                                         f"member of {role.name!r}", "NOT_FOUND")
            since = current[0]["since"]
            if since is not None and end < since:
                raise DomainError.single("until", "until is before the membership began "
                                         f"({since.isoformat()})")
            await self.repo.end_membership(tx, user["id"], role.id, end)
            return Membership(user_id=user["id"], user_name=user["userName"], role_id=role.id,
                              role_name=role.name, since=since, until=end)

        return await self.db.write_tx(work)

    async def entitle(
        self, role_name: str, target_id: str, principal: Principal | None, revoke: bool = False
    ) -> Role:
        """Entitle a role to a software package CI or a catalogue item (or revoke it)."""
        require_permission(principal, Permission.IDENTITY_WRITE, "change entitlements")

        async def work(tx: CountingTx) -> Role:
            role = await self._role(tx, role_name)
            target = await self.repo.entitlement_target(tx, target_id)
            if target is None:
                raise DomainError.single("targetId", f"{target_id!r} is neither a software "
                                         "package CI nor a catalogue item", "NOT_FOUND")
            if revoke:
                await self.repo.revoke(tx, role.id, target_id)
                return role
            if target["retired"]:
                raise DomainError.single("targetId", f"{target['name']!r} is retired",
                                         "CONFLICT")
            await self.repo.entitle(tx, role.id, target_id, utcnow())
            return role

        return await self.db.write_tx(work)
