"""How deep a caller may see: roles become a Cypher predicate on the item ``n`` (its text is
``identity.queries.scope_predicate``, reached through the repository).

The predicate goes into the WHERE clause of every read of items (lookups by id, lists and
their counts, relationship neighbours and the nodes on their paths), so an item a caller may
not see behaves exactly like one that does not exist: no error that confirms its id, no count
that includes it, no path through it.

Roles grant visibility; several roles grant the union:
- everything: admin, operator, monitoring (alarm sources map alarms onto CIs)
- every service, business and technical, but no CI: executive, finance, finance_all,
  catalogue_admin
- every service plus the full depth of the services owned by a group the user belongs to
  (``(:User)-[:MEMBER_OF_GROUP]->(:OwnerGroup)<-[:OWNED_BY]-(:Service)``): service_owner
- business services only: requester, approver
- nothing: discovery_agent (ingest only), an authenticated caller with no known role

Every caller also sees what is their own: the service and the CIs of their catalogue
subscriptions (``(:Subscription {consumer})-[:PROVISIONED|OF_SERVICE]->``), the desktops
assigned to them (``assignedUser``) and those their sessions ran on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, LiteralString

from cmdb.identity.principal import Principal
from cmdb.identity.repository import scope_predicate

_SEES_ALL = frozenset({"admin", "operator", "monitoring"})
_SEES_SERVICES = frozenset({"executive", "finance", "finance_all", "catalogue_admin",
                            "service_owner"})
_SEES_BUSINESS = frozenset({"requester", "approver"})
_SEES_OWNED_MODELS = frozenset({"service_owner"})


@dataclass(frozen=True)
class Visibility:
    everything: bool = False
    service_kinds: frozenset[str] = frozenset()  # serviceKind values visible wholesale
    owned_models_of: str | None = None  # userName whose groups' services are seen in depth
    own_items_of: str | None = None  # userName whose subscriptions' items are seen

    @property
    def nothing(self) -> bool:
        return (not self.everything and not self.service_kinds
                and self.owned_models_of is None and self.own_items_of is None)

    def predicate(self, var: str = "n") -> LiteralString:
        """A boolean Cypher expression on ``var``; its parameters come from ``params``."""
        return scope_predicate(var, self.everything, kinds=bool(self.service_kinds),
                               owned_models=self.owned_models_of is not None,
                               own_items=self.own_items_of is not None)

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if not self.everything and self.service_kinds:
            out["scope_kinds"] = sorted(self.service_kinds)
        if not self.everything and self.owned_models_of is not None:
            out["scope_user"] = self.owned_models_of
        if not self.everything and self.own_items_of is not None:
            out["scope_me"] = self.own_items_of
        return out


EVERYTHING = Visibility(everything=True)
NOTHING = Visibility()


def visibility(principal: Principal | None) -> Visibility:
    """What ``principal`` may see; None (anonymous, e.g. internal jobs have no principal)
    sees nothing: code paths without a caller use ``EVERYTHING`` explicitly."""
    if principal is None:
        return NOTHING
    roles = principal.roles
    if roles & _SEES_ALL:
        return EVERYTHING
    kinds: set[str] = set()
    if roles & _SEES_SERVICES:
        kinds |= {"BUSINESS", "TECHNICAL"}
    if roles & _SEES_BUSINESS:
        kinds.add("BUSINESS")
    owner = principal.user if roles & _SEES_OWNED_MODELS else None
    mine = principal.user if roles else None  # a caller with no known role sees nothing
    return Visibility(service_kinds=frozenset(kinds), owned_models_of=owner, own_items_of=mine)
