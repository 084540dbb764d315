"""The caller of a request and the permissions their roles grant.

The principal comes from a validated bearer token (``identity/tokens.py``): its user claim and
the roles its role or group claim maps to.
"""

from __future__ import annotations

from dataclasses import dataclass

from cmdb.core.models import DomainError, FieldError

MAX_USER_LENGTH = 200
MAX_ROLES = 50


class Permission:
    """Permission names, ``<area>:<action>``."""

    ALARM_ACKNOWLEDGE = "alarm:acknowledge"
    ALARM_WRITE = "alarm:write"  # raise and clear
    # Catalogue: browse what one may order; order (and follow one's own orders and
    # subscriptions); approve orders waiting on oneself; manage the catalogue, every order,
    # subscription and fulfilment task.
    CATALOGUE_READ = "catalogue:read"
    CATALOGUE_ORDER = "catalogue:order"
    CATALOGUE_APPROVE = "catalogue:approve"
    CATALOGUE_MANAGE = "catalogue:manage"
    # People, roles and desktops. Anyone signed in may read their own user view.
    IDENTITY_READ = "identity:read"  # every user, role, membership and desktop history
    IDENTITY_WRITE = "identity:write"  # users, roles, memberships, managers, entitlements
    VDI_INGEST = "vdi:ingest"  # the VDI broker's session feed
    # Discovery: send batches and merge duplicates; register sources and sweep stale CIs.
    DISCOVERY_WRITE = "discovery:write"
    DISCOVERY_ADMIN = "discovery:admin"
    # Chargeback: read the cost of one's cost centres (and below) or of all; manage meters,
    # rates, pools and periods; send usage records. Everyone may read their own cost.
    CHARGEBACK_READ = "chargeback:read"
    CHARGEBACK_READ_ALL = "chargeback:read-all"
    CHARGEBACK_MANAGE = "chargeback:manage"
    USAGE_INGEST = "chargeback:usage"
    # Operations: scrape /metrics (unless CMDB_METRICS_PUBLIC makes it public).
    METRICS_READ = "metrics:read"


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
_ALARMS = frozenset({Permission.ALARM_ACKNOWLEDGE, Permission.ALARM_WRITE})

# --- catalogue grants ------------------------------------------------------------------------
_CATALOGUE_BROWSE = frozenset({Permission.CATALOGUE_READ})
_CATALOGUE_ORDER = _CATALOGUE_BROWSE | {Permission.CATALOGUE_ORDER}
_CATALOGUE_APPROVE = _CATALOGUE_ORDER | {Permission.CATALOGUE_APPROVE}
_CATALOGUE_ALL = _CATALOGUE_APPROVE | {Permission.CATALOGUE_MANAGE}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "executive": _CATALOGUE_BROWSE,
    "service_owner": _CATALOGUE_ORDER,
    "operator": _ALARMS | _CATALOGUE_ORDER,
    "requester": _CATALOGUE_ORDER,
    "approver": _CATALOGUE_APPROVE,
    "catalogue_admin": _CATALOGUE_ALL,
    "finance": _CATALOGUE_BROWSE,
    "finance_all": _CATALOGUE_BROWSE,
    "discovery_agent": frozenset({Permission.ALARM_WRITE, Permission.DISCOVERY_WRITE}),
    "monitoring": frozenset({Permission.ALARM_WRITE}),
    "admin": _ALARMS | _CATALOGUE_ALL | {Permission.DISCOVERY_WRITE,
                                         Permission.DISCOVERY_ADMIN},
}

# People, roles and desktops (one block, added to the grants above).
_IDENTITY_GRANTS: dict[str, frozenset[str]] = {
    "operator": frozenset({Permission.IDENTITY_READ}),
    "service_owner": frozenset({Permission.IDENTITY_READ}),
    "approver": frozenset({Permission.IDENTITY_READ}),
    "catalogue_admin": frozenset({Permission.IDENTITY_READ}),
    "finance": frozenset({Permission.IDENTITY_READ}),
    "finance_all": frozenset({Permission.IDENTITY_READ}),
    "discovery_agent": frozenset({Permission.VDI_INGEST}),
    "admin": frozenset({Permission.IDENTITY_READ, Permission.IDENTITY_WRITE,
                        Permission.VDI_INGEST}),
}
for _role, _perms in _IDENTITY_GRANTS.items():
    ROLE_PERMISSIONS[_role] = ROLE_PERMISSIONS[_role] | _perms

# Chargeback (one block, added to the grants above).
_CHARGEBACK_ALL = frozenset({Permission.CHARGEBACK_READ_ALL, Permission.CHARGEBACK_MANAGE,
                             Permission.USAGE_INGEST})
_CHARGEBACK_GRANTS: dict[str, frozenset[str]] = {
    "finance": frozenset({Permission.CHARGEBACK_READ}),
    "finance_all": _CHARGEBACK_ALL,
    "discovery_agent": frozenset({Permission.USAGE_INGEST}),
    "monitoring": frozenset({Permission.USAGE_INGEST}),
    "admin": _CHARGEBACK_ALL,
}
for _role, _perms in _CHARGEBACK_GRANTS.items():
    ROLE_PERMISSIONS[_role] = ROLE_PERMISSIONS[_role] | _perms

# Operations (one block, added to the grants above).
_OPERATIONS_GRANTS: dict[str, frozenset[str]] = {
    "monitoring": frozenset({Permission.METRICS_READ}),
    "admin": frozenset({Permission.METRICS_READ}),
}
for _role, _perms in _OPERATIONS_GRANTS.items():
    ROLE_PERMISSIONS[_role] = ROLE_PERMISSIONS[_role] | _perms


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
