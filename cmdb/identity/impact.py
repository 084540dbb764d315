"""Who a failure reaches: the users whose desktops or entitled software it takes down or
degrades, and their roles, ranked worst first. Pure functions over what the identity
repository and the health service read."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

from cmdb.core.models import CRITICALITY_RANK, Criticality, OperationalState
from cmdb.identity.models import AffectedRole, AffectedUser, User
from cmdb.rollup.models import PRECEDENCE

# Per affected item id: its state, the item names from the failing item to it, and the rank
# of its criticality.
Affected = dict[str, tuple[OperationalState, list[str], int]]
# Per user id: (state, criticality rank, reason, path) for each way the failure reaches them.
Reasons = dict[str, list[tuple[OperationalState, int, str, list[str]]]]


def worst(states: list[OperationalState]) -> OperationalState:
    return max(states, key=PRECEDENCE.__getitem__) if states else OperationalState.UP


class _ImpactedItem(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def criticality(self) -> Criticality: ...


class _ImpactEntry(Protocol):
    @property
    def item(self) -> _ImpactedItem: ...
    @property
    def state(self) -> OperationalState: ...
    @property
    def path_names(self) -> list[str]: ...


class ImpactReader(Protocol):
    """What a failure holds up (the health service): identity ranks the people it reaches
    without importing the layer above it."""

    async def impact(self, ids: list[str], services_only: bool = ..., assume_down: bool = ...,
                     at: datetime | None = ...) -> Sequence[_ImpactEntry]: ...


def _criticality(row: dict[str, Any]) -> Criticality:
    return Criticality(row.get("criticality") or Criticality.MEDIUM.value)


def affected_items(
    entries: Iterable[_ImpactEntry], ids: list[str], own: dict[str, dict[str, Any]],
    assume_down: bool,
) -> Affected:
    """What the failure holds up (``entries``), and the failing items themselves (``own``:
    their stored rows; down when ``assume_down``), when not up."""
    affected: Affected = {}
    for e in entries:
        if e.state is not OperationalState.UP:
            affected[e.item.id] = (e.state, e.path_names,
                                   CRITICALITY_RANK[e.item.criticality])
    for item_id in ids:
        row = own.get(item_id)
        if row is None:
            continue
        state = OperationalState.DOWN if assume_down else OperationalState(row["state"])
        if state is not OperationalState.UP:
            affected[item_id] = (state, [row["name"]],
                                 CRITICALITY_RANK[_criticality(row)])
    return affected


def reasons_per_user(
    affected: Affected, by_desktop: list[dict[str, Any]], by_service: list[dict[str, Any]]
) -> Reasons:
    """Why each user is reached: an affected desktop (or its host or pool), or entitled
    software that needs an affected service."""
    reasons: Reasons = {}
    for r in by_desktop:
        state, path, crit = affected[r["via"]]
        desk_path = path if path[-1] == r["desktop"] else [*path, r["desktop"]]
        reasons.setdefault(r["userId"], []).append((
            state, crit, f"desktop {r['desktop']} {state.value.lower()} via "
            + " -> ".join(path), desk_path))
    for r in by_service:
        state, path, crit = affected[r["via"]]
        reasons.setdefault(r["userId"], []).append((
            state, crit, f"{r['package']} (role {r['role']}) needs {path[-1]}, "
            f"{state.value.lower()} via " + " -> ".join(path),
            [*path, r["package"]]))
    return reasons


def rank_users(
    reasons: Reasons, users: dict[str, User], roles: dict[str, list[str]]
) -> list[AffectedUser]:
    """Worst state first, then the most critical affected item, then the most reasons."""
    ranked = []
    for uid in sorted(reasons):
        if uid not in users:
            continue
        found = sorted(set((s, c, text, tuple(p)) for s, c, text, p in reasons[uid]),
                       key=lambda x: (-PRECEDENCE[x[0]], x[1], x[2]))
        state = found[0][0]
        key = (-PRECEDENCE[state], min(c for _, c, _, _ in found), -len(found),
               users[uid].user_name.lower())
        ranked.append((key, uid, state, found))
    ranked.sort(key=lambda x: x[0])
    return [
        AffectedUser(rank=i + 1, user=users[uid], state=state, roles=roles.get(uid, []),
                     reasons=[text for _, _, text, _ in found],
                     paths=[list(p) for _, _, _, p in found])
        for i, (_, uid, state, found) in enumerate(ranked)
    ]


def rank_roles(affected_users: list[AffectedUser]) -> list[AffectedRole]:
    """Roles with affected members: worst state first, then the most members."""
    per_role: dict[str, list[AffectedUser]] = {}
    for u in affected_users:
        for role in u.roles:
            per_role.setdefault(role, []).append(u)
    role_order = sorted(per_role.items(), key=lambda kv: (
        -max(PRECEDENCE[u.state] for u in kv[1]), -len(kv[1]), kv[0].lower()))
    return [
        AffectedRole(rank=i + 1, role=name,
                     state=worst([u.state for u in members]),
                     users=[u.user.user_name for u in members])
        for i, (name, members) in enumerate(role_order)
    ]
