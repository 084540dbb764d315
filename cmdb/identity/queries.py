"""Cypher for users, roles, memberships and the user view. The graph model: see models.py.

Membership is current when ``since <= now`` and ``until`` is null (``until`` is never set in
the future, so ``until IS NULL`` alone also reads right).
"""

from collections.abc import Collection
from typing import LiteralString

from cmdb.core.cypher import trusted

USER_PROJECTION: LiteralString = """u {.id, .userName, .displayName, .email, .active,
    createdAt: toString(u.createdAt), updatedAt: toString(u.updatedAt),
    managerId: [(u)-[:REPORTS_TO]->(m:User) | m.id][0],
    costCentreId: [(u)-[:IN_COST_CENTRE]->(cc:CostCentre) | cc.id][0]}"""

# Roles made elsewhere may carry only {name, description}: the name stands in for the id.
ROLE_PROJECTION: LiteralString = "r {id: coalesce(r.id, r.name), .name, .description}"

_CURRENT: LiteralString = "coalesce(h.since, $now) <= $now AND h.until IS NULL"

# --- users --------------------------------------------------------------------------------------

USERS_BY_NAME: LiteralString = (
    "UNWIND $names AS name MATCH (u:User {userNameLower: toLower(name)}) "
    "RETURN name, " + USER_PROJECTION + " AS user"
)

USERS_BY_ID: LiteralString = (
    "UNWIND $ids AS id MATCH (u:User {id: id}) RETURN " + USER_PROJECTION + " AS user"
)

CREATE_USER: LiteralString = (
    """
CREATE (u:User {id: $id, createdAt: $now, updatedAt: $now})
SET u += $props
RETURN """
    + USER_PROJECTION
    + " AS user"
)

UPDATE_USER: LiteralString = (
    """
MATCH (u:User {id: $id})
SET u += $props, u.updatedAt = $now
RETURN """
    + USER_PROJECTION
    + " AS user"
)

# Lock a user (writers change one user at a time) and read what checks need.
LOCK_USER: LiteralString = """
MATCH (u:User {userNameLower: toLower($name)})
SET u._lock = true REMOVE u._lock
RETURN u.id AS id, u.userName AS userName
"""

# The manager chain above a user (to refuse cycles).
MANAGER_CHAIN: LiteralString = """
MATCH (m:User {id: $managerId})
OPTIONAL MATCH (m)-[:REPORTS_TO*1..50]->(top:User)
WITH m, collect(DISTINCT top.id) AS above
RETURN [m.id] + above AS chain
"""


def _set_link(node: str, rel: str, target: str, touch: bool) -> LiteralString:
    """Replace the one ``rel`` link of the ``node`` with id ``$id`` by one to the ``target``
    with id ``$targetId`` (no link when that is null)."""
    return trusted(
        f"MATCH (a:{node} {{id: $id}})\n"
        f"OPTIONAL MATCH (a)-[old:{rel}]->()\n"
        "DELETE old\n"
        "WITH DISTINCT a\n"
        f"OPTIONAL MATCH (b:{target} {{id: $targetId}})\n"
        f"FOREACH (_ IN CASE WHEN b IS NULL THEN [] ELSE [1] END | CREATE (a)-[:{rel}]->(b))\n"
        + ("SET a.updatedAt = $now\n" if touch else "")
        + "RETURN a.id AS id"
    )


SET_MANAGER = _set_link("User", "REPORTS_TO", "User", touch=True)
SET_COST_CENTRE = _set_link("User", "IN_COST_CENTRE", "CostCentre", touch=True)
SET_COST_CENTRE_MANAGER = _set_link("CostCentre", "MANAGED_BY", "User", touch=False)

COST_CENTRE_BY_CODE: LiteralString = "MATCH (cc:CostCentre {code: $code}) RETURN cc.id AS id"

OWNER_GROUPS_FOUND: LiteralString = """
UNWIND $ids AS id MATCH (g:OwnerGroup {id: id}) RETURN collect(g.id) AS found
"""

SET_OWNER_GROUPS: LiteralString = """
MATCH (u:User {id: $id})
OPTIONAL MATCH (u)-[old:MEMBER_OF_GROUP]->()
DELETE old
WITH DISTINCT u
CALL (u) {
  UNWIND $groupIds AS gid
  MATCH (g:OwnerGroup {id: gid})
  CREATE (u)-[:MEMBER_OF_GROUP]->(g)
}
SET u.updatedAt = $now
RETURN u.id AS id
"""

CONFLICTING_USER: LiteralString = """
MATCH (u:User {userNameLower: $nameLower}) WHERE u.id <> $id RETURN u.userName AS userName
"""

# --- nested user fields, batched by user id -----------------------------------------------------

DIRECT_REPORTS: LiteralString = (
    """
UNWIND $ids AS id
MATCH (m:User {id: id})<-[:REPORTS_TO]-(u:User)
WITH id, u ORDER BY u.userNameLower
RETURN id, collect("""
    + USER_PROJECTION
    + """) AS users
"""
)

OWNER_GROUP_IDS: LiteralString = """
UNWIND $ids AS id
MATCH (u:User {id: id})-[:MEMBER_OF_GROUP]->(g:OwnerGroup)
WITH id, g ORDER BY g.nameLower
RETURN id, collect(g.id) AS groupIds
"""

MANAGED_COST_CENTRE_IDS: LiteralString = """
UNWIND $ids AS id
MATCH (u:User {id: id})<-[:MANAGED_BY]-(cc:CostCentre)
WITH id, cc ORDER BY cc.code
RETURN id, collect(cc.id) AS ccIds
"""



def _memberships(match: LiteralString, order: LiteralString) -> LiteralString:
    """Memberships per id of ``$ids``, ended ones too if ``$includeEnded``; ``match`` binds
    ``u``, ``h`` and ``r`` for an ``id``."""
    return (
        "UNWIND $ids AS id\n" + match + """
WHERE $includeEnded OR h.until IS NULL
WITH id, u, h, r ORDER BY """ + order + """, h.since
RETURN id, collect({userId: u.id, userName: u.userName, roleId: coalesce(r.id, r.name),
                    roleName: r.name, since: toString(h.since),
                    until: toString(h.until)}) AS memberships
"""
    )


MEMBERSHIPS_OF_USERS = _memberships("MATCH (u:User {id: id})-[h:HAS_ROLE]->(r:Role)",
                                    "toLower(r.name)")
MEMBERSHIPS_OF_ROLES = _memberships(
    "MATCH (r:Role WHERE coalesce(r.id, r.name) = id)<-[h:HAS_ROLE]-(u:User)", "u.userNameLower")

# Entitlements of users through their current roles, each with the roles that grant it.
USER_ENTITLEMENTS: LiteralString = (
    """
UNWIND $ids AS id
MATCH (u:User {id: id})-[h:HAS_ROLE]->(r:Role)-[:ENTITLED_TO]->(x)
WHERE """
    + _CURRENT
    + """ AND coalesce(x.lifecycleStatus, '') <> 'RETIRED'
WITH id, x, r ORDER BY toLower(r.name)
WITH id, x, collect(DISTINCT r.name) AS roles
WITH id, x, roles ORDER BY x.nameLower, x.name, x.id
RETURN id, collect({targetId: x.id, name: coalesce(x.name, x.title, x.id),
                    catalogue: x:CatalogueItem, roles: roles}) AS entitlements
"""
)

ROLE_ENTITLEMENTS: LiteralString = """
UNWIND $ids AS id
MATCH (r:Role WHERE coalesce(r.id, r.name) = id)-[:ENTITLED_TO]->(x)
WHERE coalesce(x.lifecycleStatus, '') <> 'RETIRED'
WITH id, r, x ORDER BY x.nameLower, x.name, x.id
RETURN id, collect({targetId: x.id, name: coalesce(x.name, x.title, x.id),
                    catalogue: x:CatalogueItem, roles: [r.name]}) AS entitlements
"""

# Orders the user placed (written by the catalogue), newest first.
SERVICE_REQUESTS: LiteralString = """
UNWIND $ids AS id
MATCH (u:User {id: id})
CALL (u) {
  MATCH (o:Order)-[:REQUESTED_BY]->(u)
  WITH o ORDER BY o.createdAt DESC, o.id DESC LIMIT $limit
  RETURN collect(properties(o)) AS orders
}
RETURN id, orders
"""

# --- users list ---------------------------------------------------------------------------------

# The users list's filters, by parameter name: each given one is a predicate on ``u``.
_USER_FILTERS: dict[str, LiteralString] = {
    "self": "u.userName = $self",  # callers without identity:read see only themselves
    "name": "(u.userNameLower CONTAINS $name OR toLower(u.displayName) CONTAINS $name)",
    "role": "EXISTS { MATCH (u)-[h:HAS_ROLE]->(rf:Role WHERE toLower(rf.name) = $role) "
            "WHERE h.until IS NULL }",
    "costCentre": "EXISTS { MATCH (u)-[:IN_COST_CENTRE]->(:CostCentre {code: $costCentre}) }",
    "manager": "EXISTS { MATCH (u)-[:REPORTS_TO]->(:User {userNameLower: $manager}) }",
    "active": "u.active = $active",
}


def list_users(filters: Collection[str], cursor: bool, forward: bool) -> LiteralString:
    """Users by user name (then id), a keyset page; only the ``filters`` given (names of
    ``_USER_FILTERS``) become predicates."""
    where = ["true", *(_USER_FILTERS[k] for k in _USER_FILTERS if k in filters)]
    filtered = " AND ".join(where)
    page = filtered
    if cursor:
        op = ">" if forward else "<"
        page += (f" AND (u.userNameLower {op} $cursorKey OR "
                 f"(u.userNameLower = $cursorKey AND u.id {op} $cursorId))")
    direction = "" if forward else " DESC"
    return trusted(
        "CALL () { MATCH (u:User) WHERE " + page + "\n"
        "  WITH u ORDER BY u.userNameLower" + direction + ", u.id" + direction
        + " LIMIT $limit\n"
        "  RETURN collect(" + USER_PROJECTION + ") AS rows }\n"
        "CALL () { MATCH (u:User) WHERE $wantTotal AND " + filtered
        + " RETURN count(u) AS total }\n"
        "RETURN rows, CASE WHEN $wantTotal THEN total END AS total"
    )


# --- roles --------------------------------------------------------------------------------------

ROLES_BY_NAME: LiteralString = (
    "UNWIND $names AS name MATCH (r:Role WHERE toLower(r.name) = toLower(name)) "
    "RETURN name, " + ROLE_PROJECTION + " AS role"
)

ROLES_BY_ID: LiteralString = (
    "UNWIND $ids AS id MATCH (r:Role WHERE coalesce(r.id, r.name) = id) RETURN "
    + ROLE_PROJECTION + " AS role"
)

LIST_ROLES: LiteralString = (
    """
MATCH (r:Role) WHERE $name IS NULL OR toLower(r.name) CONTAINS $name
RETURN """
    + ROLE_PROJECTION
    + """ AS role ORDER BY toLower(r.name) LIMIT $limit
"""
)

CREATE_ROLE: LiteralString = (
    """
MERGE (r:Role {name: $name})
ON CREATE SET r.id = $id, r.nameLower = toLower($name), r.description = $description,
              r.createdAt = $now, r.updatedAt = $now
RETURN coalesce(r.id, r.name) = $id AS created, """
    + ROLE_PROJECTION
    + " AS role"
)

ROLE_NAME_TAKEN: LiteralString = """
MATCH (r:Role WHERE toLower(r.name) = toLower($name)) RETURN r.name AS name
"""

LOCK_MEMBERSHIPS: LiteralString = """
MATCH (u:User {id: $userId}), (r:Role WHERE coalesce(r.id, r.name) = $roleId)
SET u._lock = true REMOVE u._lock
WITH u, r
OPTIONAL MATCH (u)-[h:HAS_ROLE]->(r)
WITH h ORDER BY h.since
RETURN collect(CASE WHEN h IS NULL THEN null
                    ELSE {since: toString(h.since), until: toString(h.until)} END) AS spans
"""

ADD_MEMBERSHIP: LiteralString = """
MATCH (u:User {id: $userId}), (r:Role WHERE coalesce(r.id, r.name) = $roleId)
CREATE (u)-[:HAS_ROLE {since: $since}]->(r)
"""

END_MEMBERSHIP: LiteralString = """
MATCH (u:User {id: $userId})-[h:HAS_ROLE]->(r:Role WHERE coalesce(r.id, r.name) = $roleId)
WHERE h.until IS NULL
SET h.until = $until
RETURN count(h) AS ended
"""

# A software package CI or a catalogue item by id (each by its own index).
_TARGET: LiteralString = """CALL () {
  MATCH (x:Item {id: $targetId}) WHERE x:CI AND x.ciClass = 'SoftwarePackage' RETURN x
  UNION
  MATCH (x:CatalogueItem {id: $targetId}) RETURN x
}"""

ENTITLEMENT_TARGET: LiteralString = (
    _TARGET
    + """
RETURN x.id AS id, x:CatalogueItem AS catalogue, x.lifecycleStatus = 'RETIRED' AS retired,
       coalesce(x.name, x.title, x.id) AS name
"""
)

ENTITLE: LiteralString = (
    _TARGET
    + """
MATCH (r:Role WHERE coalesce(r.id, r.name) = $roleId)
MERGE (r)-[e:ENTITLED_TO]->(x)
ON CREATE SET e.since = $now
RETURN count(e) AS n
"""
)

REVOKE: LiteralString = """
MATCH (r:Role WHERE coalesce(r.id, r.name) = $roleId)-[e:ENTITLED_TO]->(x {id: $targetId})
DELETE e
RETURN count(e) AS n
"""

# --- the user view: desktops and environment health ---------------------------------------------

# Desktops a user is on now: open sessions on desktops that still exist and are live, and
# desktops assigned to them (attribute assignedUser). Host: where the desktop runs now.
CURRENT_DESKTOPS: LiteralString = """
UNWIND $ids AS id
MATCH (u:User {id: id})
CALL (u) {
  MATCH (u)-[:HAD_SESSION]->(s:DesktopSession)-[:ON_DESKTOP]->(d:VirtualDesktop)
  WHERE s.end IS NULL AND s.start IS NOT NULL AND d.lifecycleStatus <> 'RETIRED'
  RETURN d, s.id AS sessionId, s.start AS since, s.hostId AS sessionHostId,
         s.poolId AS sessionPoolId
  UNION
  MATCH (d:VirtualDesktop {attr_assignedUser: u.userName})
  WHERE d.lifecycleStatus <> 'RETIRED'
  RETURN d, null AS sessionId, null AS since, null AS sessionHostId, null AS sessionPoolId
}
RETURN id, d.id AS desktopId, d.nameLower AS nameLower, sessionId, toString(since) AS since,
       coalesce([(d)-[r:RUNS_ON]->(h:CI) WHERE r.retiredAt IS NULL | h.id][0],
                sessionHostId) AS hostId,
       coalesce([(d)-[r:MEMBER_OF]->(p:DesktopPool) WHERE r.retiredAt IS NULL | p.id][0],
                sessionPoolId) AS poolId
"""

# Services the user's entitled software needs: DEPENDS_ON / USES from the package to a service.
NEEDED_SERVICES: LiteralString = (
    """
UNWIND $ids AS id
MATCH (u:User {id: id})-[h:HAS_ROLE]->(:Role)-[:ENTITLED_TO]->(x:CI)
      -[r:DEPENDS_ON|USES]->(n:Service)
WHERE """
    + _CURRENT
    + """ AND r.retiredAt IS NULL AND x.lifecycleStatus <> 'RETIRED'
  AND n.lifecycleStatus <> 'RETIRED'
WITH id, n, collect(DISTINCT x.name) AS packages ORDER BY n.nameLower
RETURN id, collect({serviceId: n.id, name: n.name,
                    state: coalesce(n.healthState, 'UNKNOWN'), packages: packages}) AS services
"""
)

ITEM_STATES: LiteralString = """
UNWIND $ids AS id
MATCH (x:Item {id: id})
RETURN x.id AS id, x.name AS name, coalesce(x.healthState, 'UNKNOWN') AS state,
       x.lifecycleStatus AS lifecycleStatus, x.criticality AS criticality
"""

# --- impact on people: who a failure reaches ----------------------------------------------------

# Users on (open session) or assigned to a live desktop that is, runs on or is pooled in one
# of the affected items; ``via`` is that item.
USERS_BY_DESKTOP_ITEMS: LiteralString = """
UNWIND $ids AS via
MATCH (x:Item {id: via})
CALL (x) {
  WITH x WHERE x:VirtualDesktop AND x.lifecycleStatus <> 'RETIRED'
  RETURN x AS d
  UNION
  MATCH (d:VirtualDesktop)-[r:RUNS_ON|MEMBER_OF]->(x)
  WHERE r.retiredAt IS NULL AND d.lifecycleStatus <> 'RETIRED'
  RETURN d
}
CALL (d) {
  MATCH (u:User)-[:HAD_SESSION]->(s:DesktopSession)-[:ON_DESKTOP]->(d)
  WHERE s.end IS NULL AND s.start IS NOT NULL
  RETURN u
  UNION
  MATCH (u:User {userName: d.attr_assignedUser})
  RETURN u
}
RETURN DISTINCT via, d.name AS desktop, u.id AS userId
"""

# Users whose current roles entitle them to software that needs an affected service.
USERS_BY_NEEDED_SERVICES: LiteralString = (
    """
UNWIND $ids AS via
MATCH (n:Service {id: via})<-[r:DEPENDS_ON|USES]-(x:CI)<-[:ENTITLED_TO]-(role:Role)
      <-[h:HAS_ROLE]-(u:User)
WHERE r.retiredAt IS NULL AND x.lifecycleStatus <> 'RETIRED' AND """
    + _CURRENT
    + """
RETURN DISTINCT via, x.name AS package, role.name AS role, u.id AS userId
"""
)

CURRENT_ROLE_NAMES: LiteralString = """
UNWIND $ids AS id
MATCH (u:User {id: id})-[h:HAS_ROLE]->(r:Role)
WHERE h.until IS NULL
WITH id, r ORDER BY toLower(r.name)
RETURN id, collect(r.name) AS roles
"""

# --- a caller's scope (identity.scope.Visibility) as a predicate on items -----------------------

# Consumer -> provider relationships: what a service's model is made of, walked downwards.
MODEL_RELATIONSHIPS: LiteralString = "DEPENDS_ON|RUNS_ON|MEMBER_OF|USES|INSTALLED_ON|CONTAINS"
MODEL_DEPTH = 12
# The item variables the predicate may be written for (compiled reads number theirs).
_SCOPE_VARIABLES = frozenset({"n", "x", "s", "t", "m"}
                             | {f"{v}{i}" for v in "nm" for i in range(100)})


def scope_predicate(
    var: str, everything: bool, kinds: bool, owned_models: bool, own_items: bool
) -> LiteralString:
    """A boolean expression on ``var``: anything, or else a service of a kind in
    ``$scope_kinds``, an item in the model of a service owned by a group of ``$scope_user``,
    or an item of ``$scope_me`` (their subscriptions' items, desktops assigned to them or
    that their sessions ran on)."""
    if var not in _SCOPE_VARIABLES:
        raise ValueError(f"unexpected variable {var}")
    if everything:
        return "true"
    parts: list[str] = []
    if kinds:
        parts.append(f"({var}:Service AND {var}.serviceKind IN $scope_kinds)")
    if owned_models:
        parts.append(
            "EXISTS { MATCH (:User {userName: $scope_user})-[:MEMBER_OF_GROUP]->"
            "(:OwnerGroup)<-[:OWNED_BY]-(own:Service) "
            f"MATCH (own)-[:{MODEL_RELATIONSHIPS}*0..{MODEL_DEPTH}]->({var}) }}"
        )
    if own_items:
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
