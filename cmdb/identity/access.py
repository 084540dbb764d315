"""Who may call which root field: one rule per Query, Mutation and Subscription field.

Every root field must have a rule; ``guard_root_fields`` refuses to build a schema with a root
field that has none, so a new field cannot ship unguarded. A rule names the roles that may call
the field at all; what a permitted caller then sees is narrowed further by their scope
(``identity.scope``) inside the data queries, and some mutations check a finer permission
themselves (their payload then carries a FORBIDDEN error).

A refused call resolves to null with a FORBIDDEN error at the field's path (or UNAUTHENTICATED
for a caller without a principal): the same answer whether or not the ids it names exist.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from graphql import GraphQLError, GraphQLObjectType, GraphQLSchema

from cmdb.identity.principal import ROLES

EVERYONE = frozenset(ROLES)  # any authenticated caller; data narrowed by scope
OPERATIONS = frozenset({"admin", "operator"})
OWNERS = OPERATIONS | {"service_owner"}
ADMIN = frozenset({"admin"})
# The catalogue service checks the same permissions itself and finer ones (own orders,
# approval steps waiting on the caller); these rules mirror its grants in principal.py.
CATALOGUE_MANAGE = frozenset({"catalogue_admin", "admin"})
CATALOGUE_APPROVE = CATALOGUE_MANAGE | {"approver"}
CATALOGUE_ORDER = CATALOGUE_APPROVE | {"requester", "operator", "service_owner"}
CATALOGUE_BROWSE = CATALOGUE_ORDER | {"executive", "finance", "finance_all"}
DISCOVERY_WRITERS = frozenset({"discovery_agent", "admin"})
# Mirrors the chargeback grants in principal.py; cost reads are narrowed by the service to
# the caller's cost centres or own cost.
FINANCE_READERS = frozenset({"finance", "finance_all", "admin"})
FINANCE_MANAGERS = frozenset({"finance_all", "admin"})
USAGE_SENDERS = FINANCE_MANAGERS | {"discovery_agent", "monitoring"}
# Mirrors identity:read in principal.py.
IDENTITY_READERS = frozenset({"operator", "service_owner", "approver", "catalogue_admin",
                              "finance", "finance_all", "admin"})

QUERY_RULES: dict[str, frozenset[str]] = {
    "node": EVERYONE,
    "configurationItem": EVERYONE,
    "configurationItems": EVERYONE,
    "service": EVERYONE,
    "services": EVERYONE,
    "ownerGroups": EVERYONE,
    "costCentres": EVERYONE,
    "locations": EVERYONE,
    "serviceModel": EVERYONE,
    "availability": EVERYONE,
    "alarms": OWNERS | {"monitoring"},
    "impact": OWNERS,
    "whatIf": OWNERS,
    "stateHistory": OWNERS,
    "statesAsOf": OWNERS,
    "plannedChanges": OWNERS,
    # A count only (no ids): clients and tests wait on it for health to settle.
    "pendingRollUps": EVERYONE,
    "catalogueCategories": CATALOGUE_BROWSE,
    "catalogueItems": CATALOGUE_BROWSE,
    "catalogueItem": CATALOGUE_BROWSE,
    "order": CATALOGUE_BROWSE,
    "myOrders": CATALOGUE_BROWSE,
    "mySubscriptions": CATALOGUE_BROWSE,
    "subscription": CATALOGUE_BROWSE,
    "approvalQueue": CATALOGUE_APPROVE,
    "orders": CATALOGUE_MANAGE,
    "subscriptions": CATALOGUE_MANAGE,
    "fulfilmentTasks": CATALOGUE_MANAGE,
    # People: everyone may read themselves; the identity service narrows the rest to
    # identity:read (other users' personal fields null with FORBIDDEN).
    "me": EVERYONE,
    "user": EVERYONE,
    "users": EVERYONE,
    "roles": IDENTITY_READERS,
    "role": IDENTITY_READERS,
    "peopleImpact": OWNERS,
    "discoverySources": OPERATIONS | {"discovery_agent"},
    "meters": EVERYONE,
    "rateCards": EVERYONE,
    "costPools": FINANCE_READERS,
    "chargePeriods": FINANCE_READERS,
    "costReport": EVERYONE,
    "costTrend": EVERYONE,
    # Services' over/under-recovery: finance only (the service narrows finance to the
    # services of their cost centres).
    "chargeRecovery": FINANCE_READERS,
    "chargeLines": EVERYONE,
    "chargeLine": EVERYONE,
}

MUTATION_RULES: dict[str, frozenset[str]] = {
    "createConfigurationItem": OPERATIONS,
    "updateConfigurationItem": OPERATIONS,
    "retireConfigurationItem": OPERATIONS,
    "setAsset": OPERATIONS,
    "clearAsset": OPERATIONS,
    "setOperationalState": OPERATIONS,
    "relate": OPERATIONS,
    "unrelate": OPERATIONS,
    "createService": OPERATIONS,
    "updateService": OPERATIONS,
    "retireService": OPERATIONS,
    "createOwnerGroup": ADMIN,
    "createCostCentre": ADMIN,
    "createLocation": ADMIN,
    "planChange": OWNERS,
    # The alarm service checks alarm:write / alarm:acknowledge itself (payload errors).
    "raiseAlarm": EVERYONE,
    "clearAlarm": EVERYONE,
    "acknowledgeAlarm": EVERYONE,
    "createCatalogueCategory": CATALOGUE_MANAGE,
    "createCatalogueItem": CATALOGUE_MANAGE,
    "updateCatalogueItem": CATALOGUE_MANAGE,
    "retireCatalogueItem": CATALOGUE_MANAGE,
    "completeFulfilmentTask": CATALOGUE_MANAGE,
    "failFulfilmentTask": CATALOGUE_MANAGE,
    "submitOrder": CATALOGUE_ORDER,
    "cancelOrder": CATALOGUE_ORDER,
    "retryFulfilment": CATALOGUE_ORDER,
    "decommissionSubscription": CATALOGUE_ORDER,
    "approveOrder": CATALOGUE_APPROVE,
    "rejectOrder": CATALOGUE_APPROVE,
    "createUser": ADMIN,
    "updateUser": ADMIN,
    "setManager": ADMIN,
    "setUserCostCentre": ADMIN,
    "setUserOwnerGroups": ADMIN,
    "setCostCentreOwner": ADMIN,
    "createRole": ADMIN,
    "addRoleMembership": ADMIN,
    "endRoleMembership": ADMIN,
    "entitleRole": ADMIN,
    "revokeRoleEntitlement": ADMIN,
    # Mirrors discovery:write and discovery:admin in principal.py.
    "ingestDiscoveryBatch": DISCOVERY_WRITERS,
    "mergeConfigurationItems": DISCOVERY_WRITERS,
    "registerDiscoverySource": ADMIN,
    "sweepStaleConfigurationItems": ADMIN,
    "defineMeter": FINANCE_MANAGERS,
    "publishRateCard": FINANCE_MANAGERS,
    "defineCostPool": FINANCE_MANAGERS,
    "setCostPoolAmount": FINANCE_MANAGERS,
    "setBillingMode": FINANCE_MANAGERS,
    "calculateChargePeriod": FINANCE_MANAGERS,
    "closeChargePeriod": FINANCE_MANAGERS,
    "bookAdjustment": FINANCE_MANAGERS,
    "recordUsage": USAGE_SENDERS,
}

SUBSCRIPTION_RULES: dict[str, frozenset[str]] = {
    # Narrowed inside: all items only for those who see everything; named ids within scope;
    # a user's environment for themselves or for identity readers.
    "stateChanges": EVERYONE,
    "orderStatus": CATALOGUE_BROWSE,
}

RULES: dict[str, dict[str, frozenset[str]]] = {
    "Query": QUERY_RULES, "Mutation": MUTATION_RULES, "Subscription": SUBSCRIPTION_RULES,
}


def refusal(field: str, principal: Any) -> GraphQLError:
    if principal is None:
        return GraphQLError(f"authentication is required for {field}",
                            extensions={"code": "UNAUTHENTICATED"})
    return GraphQLError(f"your roles may not use {field}", extensions={"code": "FORBIDDEN"})


def allowed(type_name: str, field: str, principal: Any) -> bool:
    roles = RULES[type_name][field]
    return principal is not None and bool(principal.roles & roles)


def _guard(type_name: str, field: str, resolve: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(resolve):
        @functools.wraps(resolve)
        async def guarded_async(root: Any, info: Any, **kwargs: Any) -> Any:
            principal = info.context.principal
            if not allowed(type_name, field, principal):
                raise refusal(field, principal)
            return await resolve(root, info, **kwargs)
        return guarded_async

    @functools.wraps(resolve)
    def guarded(root: Any, info: Any, **kwargs: Any) -> Any:
        principal = info.context.principal
        if not allowed(type_name, field, principal):
            raise refusal(field, principal)
        return resolve(root, info, **kwargs)
    return guarded


def guard_root_fields(schema: GraphQLSchema) -> None:
    """Wrap every root field's resolver (or subscriber) with its rule; fail if one has none."""
    for type_name, rules in RULES.items():
        gtype = schema.get_type(type_name)
        if not isinstance(gtype, GraphQLObjectType):
            continue
        missing = sorted(set(gtype.fields) - set(rules))
        if missing:
            raise RuntimeError(f"root fields without an access rule in identity/access.py: "
                               f"{type_name}.{', '.join(missing)}")
        for name, definition in gtype.fields.items():
            if type_name == "Subscription" and definition.subscribe is not None:
                definition.subscribe = _guard(type_name, name, definition.subscribe)
            elif definition.resolve is not None:
                definition.resolve = _guard(type_name, name, definition.resolve)
