"""The caller of a request and the permissions their roles grant.

Identity will come from OAuth2/OIDC bearer tokens (JWT) whose claims carry the roles. Until
that lands, ``principal_from_headers`` is a DEVELOPMENT STAND-IN: in development mode only it
reads the user from ``X-CMDB-User`` and the roles from ``X-CMDB-Roles`` (comma-separated).
In production mode it never trusts those headers: every request is anonymous (``None``),
so nothing that needs a permission is allowed until real authentication replaces it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cmdb.core.models import DomainError, FieldError

USER_HEADER = "x-cmdb-user"
ROLES_HEADER = "x-cmdb-roles"
MAX_USER_LENGTH = 200
MAX_ROLES = 50


class Permission:
    """Permission names, ``<area>:<action>``."""

    ALARM_ACKNOWLEDGE = "alarm:acknowledge"
    ALARM_WRITE = "alarm:write"  # raise and clear
    # Discovery: send batches and merge duplicates; register sources and sweep stale CIs.
    DISCOVERY_WRITE = "discovery:write"
    DISCOVERY_ADMIN = "discovery:admin"


ROLES: tuple[str, ...] = (
    "executive",
    "service_owner",
    "operator",
    "requester",
    "approver",
    "catalogue_admin",
    "finance",
    "finance_all",
    "discovery_agent",
    "monitoring",
    "admin",
)

# Role -> the permissions it grants. Roles not listed (or unknown) grant nothing.
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "executive": frozenset(),
    "service_owner": frozenset(),
    "operator": frozenset({Permission.ALARM_ACKNOWLEDGE, Permission.ALARM_WRITE}),
    "requester": frozenset(),
    "approver": frozenset(),
    "catalogue_admin": frozenset(),
    "finance": frozenset(),
    "finance_all": frozenset(),
    "discovery_agent": frozenset({Permission.ALARM_WRITE, Permission.DISCOVERY_WRITE}),
    "monitoring": frozenset({Permission.ALARM_WRITE}),
    "admin": frozenset({Permission.ALARM_ACKNOWLEDGE, Permission.ALARM_WRITE,
                        Permission.DISCOVERY_WRITE, Permission.DISCOVERY_ADMIN}),
}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user (or integration) name and its roles."""

    user: str
    roles: frozenset[str]

    @property
    def permissions(self) -> frozenset[str]:
        return frozenset().union(*(ROLE_PERMISSIONS.get(r, frozenset()) for r in self.roles))


def has_permission(principal: Principal | None, perm: str) -> bool:
    """Whether the caller may do ``perm``; an anonymous caller (None) may do nothing."""
    return principal is not None and perm in principal.permissions


class Forbidden(DomainError):
    """The caller may not do this; nothing has been read or written."""

    def __init__(self, perm: str, action: str, anonymous: bool) -> None:
        who = "anonymous callers" if anonymous else "your roles"
        super().__init__([FieldError(
            field=None, message=f"{who} may not {action} (needs permission {perm})",
            code="FORBIDDEN",
        )])
        self.permission = perm


def require_permission(principal: Principal | None, perm: str, action: str) -> Principal:
    """The principal, if it may do ``perm``; otherwise ``Forbidden`` (``action`` words it)."""
    if principal is None or not has_permission(principal, perm):
        raise Forbidden(perm, action, principal is None)
    return principal


def principal_from_headers(headers: Mapping[str, str], development: bool) -> Principal | None:
    """The caller of a request; None is anonymous.

    Development stand-in until bearer tokens land: only in development mode, the user comes
    from ``X-CMDB-User`` and the roles from ``X-CMDB-Roles`` (comma-separated, case does not
    matter). Production mode ignores those headers and returns None.
    """
    if not development:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    user = lowered.get(USER_HEADER, "").strip()
    if not user or len(user) > MAX_USER_LENGTH or not user.isprintable():
        return None
    roles = frozenset(
        r for r in (part.strip().lower() for part in lowered.get(ROLES_HEADER, "").split(","))
        if r
    )
    if len(roles) > MAX_ROLES:
        return None
    return Principal(user=user, roles=roles)
