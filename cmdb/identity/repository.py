"""Runs the identity Cypher and returns models. Writers run inside a caller's transaction;
the batch readers take many user (or role) ids and answer in one round trip."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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


class IdentityRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- users ------------------------------------------------------------------------------

    async def users_by_name(self, names: list[str]) -> dict[str, User]:
        """Users by user name, ignoring case; keys are the names as given."""
        rows = await self.db.read(q.USERS_BY_NAME, {"names": names})
        return {r["name"]: user_from_row(r["user"]) for r in rows}

    async def users_by_id(self, ids: list[str]) -> dict[str, User]:
        rows = await self.db.read(q.USERS_BY_ID, {"ids": ids})
        return {r["user"]["id"]: user_from_row(r["user"]) for r in rows}

    async def list_users(
        self, f: UserQuery, limit: int, forward: bool, cursor: tuple[Any, str] | None,
        want_total: bool, self_only: str | None,
    ) -> tuple[list[User], int | None]:
        query = q.list_users(
            f.name_contains is not None, f.role_name is not None,
            f.cost_centre_code is not None, f.manager_user_name is not None,
            f.active is not None, cursor is not None, forward, self_only is not None,
        )
        (row,) = await self.db.read(query, {
            "name": f.name_contains.lower() if f.name_contains else None,
            "role": f.role_name.lower() if f.role_name else None,
            "costCentre": f.cost_centre_code,
            "manager": f.manager_user_name.lower() if f.manager_user_name else None,
            "active": f.active,
            "cursorKey": cursor[0] if cursor else None,
            "cursorId": cursor[1] if cursor else None,
            "limit": limit, "wantTotal": want_total, "self": self_only,
        })
        return [user_from_row(u) for u in row["rows"]], row["total"]

    async def direct_reports(self, ids: list[str]) -> dict[str, list[User]]:
        rows = await self.db.read(q.DIRECT_REPORTS, {"ids": ids})
        return {r["id"]: [user_from_row(u) for u in r["users"]] for r in rows}

    async def owner_group_ids(self, ids: list[str]) -> dict[str, list[str]]:
        rows = await self.db.read(q.OWNER_GROUP_IDS, {"ids": ids})
        return {r["id"]: list(r["groupIds"]) for r in rows}

    async def managed_cost_centre_ids(self, ids: list[str]) -> dict[str, list[str]]:
        rows = await self.db.read(q.MANAGED_COST_CENTRE_IDS, {"ids": ids})
        return {r["id"]: list(r["ccIds"]) for r in rows}

    async def memberships_of_users(
        self, ids: list[str], include_ended: bool
    ) -> dict[str, list[Membership]]:
        rows = await self.db.read(q.MEMBERSHIPS_OF_USERS,
                                  {"ids": ids, "includeEnded": include_ended})
        return {r["id"]: [membership_from_row(m) for m in r["memberships"]] for r in rows}

    async def memberships_of_roles(
        self, ids: list[str], include_ended: bool
    ) -> dict[str, list[Membership]]:
        rows = await self.db.read(q.MEMBERSHIPS_OF_ROLES,
                                  {"ids": ids, "includeEnded": include_ended})
        return {r["id"]: [membership_from_row(m) for m in r["memberships"]] for r in rows}

    async def user_entitlements(
        self, ids: list[str], now: datetime
    ) -> dict[str, list[Entitlement]]:
        rows = await self.db.read(q.USER_ENTITLEMENTS, {"ids": ids, "now": now})
        return {r["id"]: [entitlement_from_row(e) for e in r["entitlements"]] for r in rows}

    async def role_entitlements(self, ids: list[str]) -> dict[str, list[Entitlement]]:
        rows = await self.db.read(q.ROLE_ENTITLEMENTS, {"ids": ids})
        return {r["id"]: [entitlement_from_row(e) for e in r["entitlements"]] for r in rows}

    async def service_requests(
        self, ids: list[str], limit: int
    ) -> dict[str, list[ServiceRequest]]:
        rows = await self.db.read(q.SERVICE_REQUESTS, {"ids": ids, "limit": limit})
        return {r["id"]: [order_from_row(o) for o in r["orders"]] for r in rows}

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
        return {r["name"]: role_from_row(r["role"]) for r in rows}

    async def roles_by_id(self, ids: list[str]) -> dict[str, Role]:
        rows = await self.db.read(q.ROLES_BY_ID, {"ids": ids})
        return {r["role"]["id"]: role_from_row(r["role"]) for r in rows}

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
        row = await tx.one(q.USERS_BY_ID, {"ids": [user_id]})
        assert row is not None
        return user_from_row(row["user"])

    @staticmethod
    async def role_in_tx(tx: CountingTx, name: str) -> Role | None:
        row = await tx.one(q.ROLES_BY_NAME, {"names": [name]})
        return role_from_row(row["role"]) if row else None
