"""How deep a caller may see: roles become a Cypher predicate on the item ``n``.

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

from cmdb.core.cypher import trusted
from cmdb.identity.principal import Principal

# Consumer -> provider relationships: what a service's model is made of, walked downwards.
MODEL_RELATIONSHIPS: LiteralString = "DEPENDS_ON|RUNS_ON|MEMBER_OF|USES|INSTALLED_ON|CONTAINS"
MODEL_DEPTH = 12

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
        if var not in {"n", "x", "s", "t", "m"}:
            raise ValueError(f"unexpected variable {var}")
        if self.everything:
            return "true"
        parts: list[str] = []
        if self.service_kinds:
            parts.append(f"({var}:Service AND {var}.serviceKind IN $scope_kinds)")
        if self.owned_models_of is not None:
            parts.append(
                "EXISTS { MATCH (:User {userName: $scope_user})-[:MEMBER_OF_GROUP]->"
                "(:OwnerGroup)<-[:OWNED_BY]-(own:Service) "
                f"MATCH (own)-[:{MODEL_RELATIONSHIPS}*0..{MODEL_DEPTH}]->({var}) }}"
            )
        if self.own_items_of is not None:
            parts.append(
                "EXISTS { MATCH (mine:Subscription {consumer: $scope_me})"
                f"-[:PROVISIONED|OF_SERVICE]->({var}) }}"
            )
            parts.append(
                f"({var}:VirtualDesktop AND ({var}.attr_assignedUser = $scope_me OR EXISTS {{ "
                "MATCH (:User {userName: $scope_me})-[:HAD_SESSION]->(:DesktopSession)"
                f"-[:ON_DESKTOP]->({var}) }}))"
            )
        return trusted(" OR ".join(parts)) if parts else "false"

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
