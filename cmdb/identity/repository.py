"""Runs the identity Cypher and returns models. Writers run inside a caller's transaction;
the batch readers take many user (or role) ids and answer in one round trip."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, LiteralString, TypeVar

from cmdb.core.mapping import as_datetime, native
from cmdb.db.driver import CountingTx, Database
from cmdb.identity import queries as q
from cmdb.identity.models import (
    Entitlement,
    EntitlementKind,
    Membership,
    Role,
    ServiceRequest,
    User,
    UserQuery,
)


def user_from_row(row: dict[str, Any]) -> User:
    return User(
        id=row["id"], user_name=row["userName"], display_name=row["displayName"],
        email=row.get("email"), active=bool(row.get("active", True)),
        created_at=as_datetime(row.get("createdAt")), updated_at=as_datetime(row.get("updatedAt")),
        manager_id=row.get("managerId"), cost_centre_id=row.get("costCentreId"),
    )


def role_from_row(row: dict[str, Any]) -> Role:
    return Role(id=row["id"], name=row["name"], description=row.get("description"))


def membership_from_row(row: dict[str, Any]) -> Membership:
    return Membership(user_id=row["userId"], user_name=row["userName"], role_id=row["roleId"],
                      role_name=row["roleName"], since=as_datetime(row["since"]),
                      until=as_datetime(row["until"]))


def entitlement_from_row(row: dict[str, Any]) -> Entitlement:
    return Entitlement(
        target_id=row["targetId"], name=str(row["name"]), granted_by=list(row["roles"]),
        kind=EntitlementKind.CATALOGUE_ITEM if row["catalogue"]
        else EntitlementKind.SOFTWARE_PACKAGE,
    )


def _plain(value: Any) -> Any:
    """A stored property as JSON: temporal values as ISO strings."""
    v = native(value)
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def order_from_row(props: dict[str, Any]) -> ServiceRequest:
    plain = {k: _plain(v) for k, v in props.items() if not k.startswith("_")}
    status = plain.get("status")
    return ServiceRequest(
        id=str(plain.get("id")), status=str(status) if status is not None else None,
        created_at=as_datetime(plain.get("createdAt")), properties=plain,
    )


M = TypeVar("M")
Memberships = dict[str, list[Membership]]


def _keyed(rows: list[dict[str, Any]], field: str, build: Callable[[dict[str, Any]], M],
           by_name: bool = False) -> dict[str, M]:
    """Each row's ``field`` built, by the name it was asked by (``by_name``) or by its id."""
    return {r["name"] if by_name else r[field]["id"]: build(r[field]) for r in rows}


def scope_predicate(
    var: str, everything: bool, kinds: bool, owned_models: bool, own_items: bool
) -> LiteralString:
    """What a caller may see (identity.scope.Visibility) as a predicate on ``var``, for the
    statements of the repositories that read items."""
    return q.scope_predicate(var, everything, kinds, owned_models, own_items)


class IdentityRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def _lists(
        self, query: LiteralString, params: dict[str, Any], field: str,
        build: Callable[[dict[str, Any]], M],
    ) -> dict[str, list[M]]:
        """Per ``id`` of the rows: the row's ``field`` list, each built."""
        rows = await self.db.read(query, params)
        return {r["id"]: [build(x) for x in r[field]] for r in rows}

    # --- users ------------------------------------------------------------------------------

    async def users_by_name(self, names: list[str]) -> dict[str, User]:
        """Users by user name, ignoring case; keys are the names as given."""
        rows = await self.db.read(q.USERS_BY_NAME, {"names": names})
        return _keyed(rows, "user", user_from_row, by_name=True)

    async def users_by_id(self, ids: list[str]) -> dict[str, User]:
        return _keyed(await self.db.read(q.USERS_BY_ID, {"ids": ids}), "user", user_from_row)

    async def list_users(
        self, f: UserQuery, limit: int, forward: bool, cursor: tuple[Any, str] | None,
        want_total: bool, self_only: str | None,
    ) -> tuple[list[User], int | None]:
        given = {"self": self_only, "name": f.name_contains, "role": f.role_name,
                 "costCentre": f.cost_centre_code, "manager": f.manager_user_name,
                 "active": f.active}
        query = q.list_users([k for k, v in given.items() if v is not None], cursor is not None,
                             forward)
        (row,) = await self.db.read(query, {
            **given,
            "name": f.name_contains.lower() if f.name_contains else None,
            "role": f.role_name.lower() if f.role_name else None,
            "manager": f.manager_user_name.lower() if f.manager_user_name else None,
            "cursorKey": cursor[0] if cursor else None,
            "cursorId": cursor[1] if cursor else None,
            "limit": limit, "wantTotal": want_total,
        })
        return [user_from_row(u) for u in row["rows"]], row["total"]

    async def direct_reports(self, ids: list[str]) -> dict[str, list[User]]:
        return await self._lists(q.DIRECT_REPORTS, {"ids": ids}, "users", user_from_row)

    async def owner_group_ids(self, ids: list[str]) -> dict[str, list[str]]:
        rows = await self.db.read(q.OWNER_GROUP_IDS, {"ids": ids})
        return {r["id"]: list(r["groupIds"]) for r in rows}

    async def managed_cost_centre_ids(self, ids: list[str]) -> dict[str, list[str]]:
        rows = await self.db.read(q.MANAGED_COST_CENTRE_IDS, {"ids": ids})
        return {r["id"]: list(r["ccIds"]) for r in rows}

    async def memberships(
        self, of: Literal["user", "role"], ids: list[str], include_ended: bool
    ) -> dict[str, list[Membership]]:
        """Per user (or role) id: its memberships, current ones unless ``include_ended``."""
        query = q.MEMBERSHIPS_OF_USERS if of == "user" else q.MEMBERSHIPS_OF_ROLES
        return await self._lists(query, {"ids": ids, "includeEnded": include_ended},
                                 "memberships", membership_from_row)

    async def memberships_of_users(self, ids: list[str], include_ended: bool) -> Memberships:
        return await self.memberships("user", ids, include_ended)

    async def memberships_of_roles(self, ids: list[str], include_ended: bool) -> Memberships:
        return await self.memberships("role", ids, include_ended)

    async def user_entitlements(
        self, ids: list[str], now: datetime
    ) -> dict[str, list[Entitlement]]:
        return await self._lists(q.USER_ENTITLEMENTS, {"ids": ids, "now": now}, "entitlements",
                                 entitlement_from_row)

    async def role_entitlements(self, ids: list[str]) -> dict[str, list[Entitlement]]:
        return await self._lists(q.ROLE_ENTITLEMENTS, {"ids": ids}, "entitlements",
                                 entitlement_from_row)

    async def service_requests(
        self, ids: list[str], limit: int
    ) -> dict[str, list[ServiceRequest]]:
        return await self._lists(q.SERVICE_REQUESTS, {"ids": ids, "limit": limit}, "orders",
                                 order_from_row)

    async def current_desktops(self, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Per user: desktops in use now (``desktopId``, ``sessionId``, ``since``, ``hostId``,
        ``poolId``), one entry per desktop, the most recent session first."""
        rows = await self.db.read(q.CURRENT_DESKTOPS, {"ids": ids})
        per_user: dict[str, dict[str, dict[str, Any]]] = {}
        for r in sorted(rows, key=lambda r: (r["since"] is None, r["since"] or "",
                                              r["nameLower"] or "")):
            seen = per_user.setdefault(r["id"], {})
            entry = seen.get(r["desktopId"])
            if entry is None:
                seen[r["desktopId"]] = {
                    "desktopId": r["desktopId"], "sessionId": r["sessionId"],
                    "since": as_datetime(r["since"]), "hostId": r["hostId"],
                    "poolId": r["poolId"],
                }
            elif entry["sessionId"] is None and r["sessionId"] is not None:
                entry.update(sessionId=r["sessionId"], since=as_datetime(r["since"]))
        out: dict[str, list[dict[str, Any]]] = {}
        for user_id, desktops in per_user.items():
            out[user_id] = sorted(
                desktops.values(),
                key=lambda d: (d["since"] is None, -(d["since"].timestamp() if d["since"]
                                                      else 0)))
        return out

    async def needed_services(
        self, ids: list[str], now: datetime
    ) -> dict[str, list[dict[str, Any]]]:
        rows = await self.db.read(q.NEEDED_SERVICES, {"ids": ids, "now": now})
        return {r["id"]: list(r["services"]) for r in rows}

    async def item_states(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        rows = await self.db.read(q.ITEM_STATES, {"ids": ids})
        return {r["id"]: r for r in rows}

    async def users_by_desktop_items(self, ids: list[str]) -> list[dict[str, Any]]:
        """(via, desktop, userId) for users on desktops that are, run on or are pooled in
        the given items."""
        return await self.db.read(q.USERS_BY_DESKTOP_ITEMS, {"ids": ids})

    async def users_by_needed_services(
        self, ids: list[str], now: datetime
    ) -> list[dict[str, Any]]:
        """(via, package, role, userId) for users entitled to software needing the services."""
        return await self.db.read(q.USERS_BY_NEEDED_SERVICES, {"ids": ids, "now": now})

    async def current_role_names(self, ids: list[str]) -> dict[str, list[str]]:
        rows = await self.db.read(q.CURRENT_ROLE_NAMES, {"ids": ids})
        return {r["id"]: list(r["roles"]) for r in rows}

    # --- roles ------------------------------------------------------------------------------

    async def roles_by_name(self, names: list[str]) -> dict[str, Role]:
        rows = await self.db.read(q.ROLES_BY_NAME, {"names": names})
        return _keyed(rows, "role", role_from_row, by_name=True)

    async def roles_by_id(self, ids: list[str]) -> dict[str, Role]:
        return _keyed(await self.db.read(q.ROLES_BY_ID, {"ids": ids}), "role", role_from_row)

    async def list_roles(self, name: str | None, limit: int) -> list[Role]:
        rows = await self.db.read(q.LIST_ROLES,
                                  {"name": name.lower() if name else None, "limit": limit})
        return [role_from_row(r["role"]) for r in rows]

    # --- inside a caller's transaction ------------------------------------------------------

    @staticmethod
    async def lock_user(tx: CountingTx, name: str) -> dict[str, Any] | None:
        return await tx.one(q.LOCK_USER, {"name": name})

    @staticmethod
    async def user_in_tx(tx: CountingTx, user_id: str) -> User:
        return await tx.expect_one_as(q.USERS_BY_ID, {"ids": [user_id]}, "user", user_from_row)

    @staticmethod
    async def role_in_tx(tx: CountingTx, name: str) -> Role | None:
        return await tx.one_as(q.ROLES_BY_NAME, {"names": [name]}, "role", role_from_row)

    @staticmethod
    async def cost_centre_id(tx: CountingTx, code: str) -> str | None:
        return await tx.one_as(q.COST_CENTRE_BY_CODE, {"code": code}, "id", str)

    @staticmethod
    async def found_owner_groups(tx: CountingTx, ids: list[str]) -> list[str]:
        row = await tx.one(q.OWNER_GROUPS_FOUND, {"ids": ids})
        return list(row["found"]) if row else []

    @staticmethod
    async def entitlement_target(tx: CountingTx, target_id: str) -> dict[str, Any] | None:
        """A software package CI or catalogue item: ``name`` and whether it is ``retired``."""
        return await tx.one(q.ENTITLEMENT_TARGET, {"targetId": target_id})

    # --- writing, inside a caller's transaction ---------------------------------------------

    @staticmethod
    async def name_holder(tx: CountingTx, user_name: str, user_id: str) -> str | None:
        """The user name of another user who holds ``user_name`` (case ignored), if any."""
        return await tx.one_as(
            q.CONFLICTING_USER, {"nameLower": user_name.lower(), "id": user_id}, "userName", str)

    @staticmethod
    async def write_user(tx: CountingTx, user_id: str, props: dict[str, Any], now: datetime,
                         create: bool) -> User:
        """Create the user with ``props``, or set them on an existing one."""
        query = q.CREATE_USER if create else q.UPDATE_USER
        return await tx.expect_one_as(
            query, {"id": user_id, "props": props, "now": now}, "user", user_from_row)

    @staticmethod
    async def managers_above(tx: CountingTx, manager_id: str) -> list[str]:
        """The manager and everyone they report to, directly or not (to refuse cycles)."""
        row = await tx.one(q.MANAGER_CHAIN, {"managerId": manager_id})
        return list(row["chain"]) if row else []

    @staticmethod
    async def set_manager(tx: CountingTx, user_id: str, manager_id: str | None,
                          now: datetime) -> None:
        await tx.one(q.SET_MANAGER, {"id": user_id, "targetId": manager_id, "now": now})

    @staticmethod
    async def set_cost_centre(tx: CountingTx, user_id: str, cc_id: str | None,
                              now: datetime) -> None:
        await tx.one(q.SET_COST_CENTRE, {"id": user_id, "targetId": cc_id, "now": now})

    @staticmethod
    async def set_cost_centre_manager(tx: CountingTx, cc_id: str, user_id: str | None) -> None:
        await tx.one(q.SET_COST_CENTRE_MANAGER, {"id": cc_id, "targetId": user_id})

    @staticmethod
    async def set_owner_groups(tx: CountingTx, user_id: str, group_ids: list[str],
                               now: datetime) -> None:
        await tx.one(q.SET_OWNER_GROUPS, {"id": user_id, "groupIds": group_ids, "now": now})

    @staticmethod
    async def role_name_holder(tx: CountingTx, name: str) -> str | None:
        """The name of the role that holds ``name`` (case ignored), if any."""
        return await tx.one_as(q.ROLE_NAME_TAKEN, {"name": name}, "name", str)

    @staticmethod
    async def create_role(tx: CountingTx, role_id: str, name: str, description: str | None,
                          now: datetime) -> Role:
        return await tx.expect_one_as(
            q.CREATE_ROLE, {"id": role_id, "name": name, "description": description, "now": now},
            "role", role_from_row)

    @staticmethod
    async def lock_memberships(tx: CountingTx, user_id: str,
                               role_id: str) -> list[dict[str, datetime | None]]:
        """Lock the user and read their spans in the role (``since``, ``until``), oldest first."""
        row = await tx.one(q.LOCK_MEMBERSHIPS, {"userId": user_id, "roleId": role_id})
        spans = row["spans"] if row else []
        return [{"since": as_datetime(s["since"]), "until": as_datetime(s["until"])}
                for s in spans if s is not None]

    @staticmethod
    async def add_membership(tx: CountingTx, user_id: str, role_id: str,
                             since: datetime) -> None:
        await tx.rows(q.ADD_MEMBERSHIP, {"userId": user_id, "roleId": role_id, "since": since})

    @staticmethod
    async def end_membership(tx: CountingTx, user_id: str, role_id: str,
                             until: datetime) -> None:
        await tx.rows(q.END_MEMBERSHIP, {"userId": user_id, "roleId": role_id, "until": until})

    @staticmethod
    async def entitle(tx: CountingTx, role_id: str, target_id: str, now: datetime) -> None:
        await tx.one(q.ENTITLE, {"roleId": role_id, "targetId": target_id, "now": now})

    @staticmethod
    async def revoke(tx: CountingTx, role_id: str, target_id: str) -> None:
        await tx.one(q.REVOKE, {"roleId": role_id, "targetId": target_id})
