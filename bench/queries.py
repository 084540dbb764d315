"""The four benchmark operations in three dialects: our GraphQL API, the Neo4j GraphQL Library
(bench/peer) and hand-written Cypher (the raw ceiling, served by bench/raw_server.py).

Every dialect returns the same data in the same order; ``normalise`` turns each dialect's
response into one comparable shape, and ``compare_answers`` checks them against each other.

Semantics, as our API defines them:
- ``lookup``: a CI by id, retired or not.
- ``list``: live (not RETIRED) VirtualMachines that are UP, sorted by nameLower then id, 100.
  The raw statements read the ordered-list indexes as our API does (core/cypher.py
  ORDERED_INDEXES): a hand-written ceiling would; the peer's generated Cypher cannot.
- ``nested``: live technical services sorted by nameLower, id (100); for each, the live
  items at the end of its live (no retiredAt) outgoing DEPENDS_ON (first 10 by nameLower, id);
  for each of those that is a CI, the same over RUNS_ON (first 3).
- ``mutation``: set a CI's operationalState (DEGRADED on even seeds, UP on odd), bump
  updatedAt, return id and operationalState.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, LiteralString

Vars = Callable[[str, int], dict[str, Any]]

LIST_SIZE, SERVICES, COMPONENTS, HOSTS = 100, 100, 10, 3


def state_for(seed: int) -> str:
    """The state a mutation sets: alternates so repeated runs keep toggling."""
    return "DEGRADED" if seed % 2 == 0 else "UP"


@dataclass(frozen=True)
class Operation:
    name: str
    write: bool
    ours: str  # our GraphQL document
    ours_vars: Vars  # (ci_id, seed) -> variables
    peer: str  # the Neo4j GraphQL Library document
    peer_vars: Vars
    cypher: LiteralString  # hand-written Cypher
    cypher_params: Vars


def _id_only(ci_id: str, seed: int) -> dict[str, Any]:
    return {"id": ci_id}


def _none(ci_id: str, seed: int) -> dict[str, Any]:
    return {}


def _id_state(ci_id: str, seed: int) -> dict[str, Any]:
    return {"id": ci_id, "state": state_for(seed)}


LOOKUP = Operation(
    name="lookup",
    write=False,
    ours="""query Lookup($id: ID!) {
  configurationItem(id: $id) {
    id name ciClass lifecycleStatus operationalState criticality
  }
}""",
    ours_vars=_id_only,
    peer="""query Lookup($id: ID!) {
  configurationItems(where: {id: {eq: $id}}) {
    id name ciClass lifecycleStatus operationalState criticality
  }
}""",
    peer_vars=_id_only,
    cypher="""
MATCH (n:Item {id: $id}) WHERE n:CI
RETURN n.id AS id, n.name AS name, n.ciClass AS ciClass, n.lifecycleStatus AS lifecycleStatus,
       n.operationalState AS operationalState, n.criticality AS criticality
""",
    cypher_params=_id_only,
)

LIST = Operation(
    name="list",
    write=False,
    ours="""query List {
  configurationItems(
    filter: {classes: [VIRTUAL_MACHINE], operationalState: [UP]}
    first: 100
  ) {
    edges { node { id name criticality } }
  }
}""",
    ours_vars=_none,
    peer="""query List {
  configurationItemsConnection(
    where: {
      ciClass: {eq: "VirtualMachine"}
      operationalState: {eq: UP}
      NOT: {lifecycleStatus: {eq: RETIRED}}
    }
    sort: [{nameLower: ASC}, {id: ASC}]
    first: 100
  ) {
    edges { node { id name criticality } }
  }
}""",
    peer_vars=_none,
    cypher="""
MATCH (n:CI)
WHERE n.ciClass = $ciClass AND n.operationalState = $state AND n.lifecycleStatus <> 'RETIRED'
  AND n.nameLower IS NOT NULL AND n.id IS NOT NULL
// ordered as the (ciClass, operationalState, nameLower, id) index is: Neo4j stops at the page
WITH n ORDER BY n.ciClass, n.operationalState, n.nameLower, n.id LIMIT $first
RETURN n.id AS id, n.name AS name, n.criticality AS criticality
""",
    cypher_params=lambda ci_id, seed: {"ciClass": "VirtualMachine", "state": "UP",
                                       "first": LIST_SIZE},
)

_PEER_LIVE = "{edge: {retiredAt: {eq: null}}, node: {NOT: {lifecycleStatus: {eq: RETIRED}}}}"
_PEER_SORT = "[{node: {nameLower: ASC}}, {node: {id: ASC}}]"

NESTED = Operation(
    name="nested",
    write=False,
    ours="""query Nested {
  services(filter: {kinds: [TECHNICAL]}, first: 100) {
    edges { node {
      name
      relationships(direction: OUTGOING, types: [DEPENDS_ON], first: 10) {
        item {
          name
          ... on ConfigurationItem {
            relationships(direction: OUTGOING, types: [RUNS_ON], first: 3) { item { name } }
          }
        }
      }
    } }
  }
}""",
    ours_vars=_none,
    peer=f"""query Nested {{
  servicesConnection(
    where: {{serviceKind: {{eq: TECHNICAL}}, NOT: {{lifecycleStatus: {{eq: RETIRED}}}}}}
    sort: [{{nameLower: ASC}}, {{id: ASC}}]
    first: 100
  ) {{
    edges {{ node {{
      name
      dependsOnConnection(where: {_PEER_LIVE}, sort: {_PEER_SORT}, first: 10) {{
        edges {{ node {{
          name
          ... on ConfigurationItem {{
            runsOnConnection(where: {_PEER_LIVE}, sort: {_PEER_SORT}, first: 3) {{
              edges {{ node {{ name }} }}
            }}
          }}
        }} }}
      }}
    }} }}
  }}
}}""",
    peer_vars=_none,
    cypher="""
MATCH (s:Service)
WHERE s.serviceKind = $kind AND s.lifecycleStatus <> 'RETIRED'
  AND s.nameLower IS NOT NULL AND s.id IS NOT NULL
WITH s ORDER BY s.serviceKind, s.nameLower, s.id LIMIT $services
CALL (s) {
  MATCH (s)-[d:DEPENDS_ON]->(c:Item)
  WHERE d.retiredAt IS NULL AND c.lifecycleStatus <> 'RETIRED'
  WITH c ORDER BY c.nameLower, c.id LIMIT $components
  CALL (c) {
    MATCH (c)-[r:RUNS_ON]->(h:Item)
    WHERE c:CI AND r.retiredAt IS NULL AND h.lifecycleStatus <> 'RETIRED'
    WITH h ORDER BY h.nameLower, h.id LIMIT $hosts
    RETURN collect(h.name) AS hosts
  }
  RETURN collect({name: c.name, runsOn: CASE WHEN c:CI THEN hosts END}) AS dependsOn
}
RETURN s.name AS name, dependsOn
""",
    cypher_params=lambda ci_id, seed: {"kind": "TECHNICAL", "services": SERVICES,
                                       "components": COMPONENTS, "hosts": HOSTS},
)

MUTATION = Operation(
    name="mutation",
    write=True,
    ours="""mutation SetState($id: ID!, $state: OperationalState!) {
  updateConfigurationItem(id: $id, input: {operationalState: $state}) {
    configurationItem { id operationalState }
    errors { message }
  }
}""",
    ours_vars=_id_state,
    peer="""mutation SetState($id: ID!, $state: OperationalState!) {
  updateConfigurationItems(where: {id: {eq: $id}}, update: {operationalState: {set: $state}}) {
    configurationItems { id operationalState }
  }
}""",
    peer_vars=_id_state,
    cypher="""
MATCH (n:Item {id: $id}) WHERE n:CI
SET n.operationalState = $state, n.updatedAt = datetime()
RETURN n.id AS id, n.operationalState AS operationalState
""",
    cypher_params=_id_state,
)

OPERATIONS: dict[str, Operation] = {op.name: op for op in (LOOKUP, LIST, NESTED, MUTATION)}

SAMPLE_IDS: LiteralString = """
MATCH (n:CI)
WHERE n.ciClass = 'VirtualMachine' AND n.lifecycleStatus <> 'RETIRED'
RETURN n.id AS id ORDER BY rand() LIMIT $n
"""


def sample_ids(driver_or_session: Any, n: int) -> list[str]:
    """n random ids of live VirtualMachines, through a sync neo4j Driver or Session."""
    if hasattr(driver_or_session, "execute_query"):
        records, _, _ = driver_or_session.execute_query(SAMPLE_IDS, {"n": n}, routing_="r")
    else:
        records = list(driver_or_session.run(SAMPLE_IDS, {"n": n}))
    return [r["id"] for r in records]


# --- normalising answers -------------------------------------------------------------------

# Our API shows CI classes as enum names; the graph (and so the peer and raw) holds class names.
_CLASS_NAMES = {
    "SERVER": "Server", "HYPERVISOR_HOST": "HypervisorHost", "VIRTUAL_MACHINE": "VirtualMachine",
    "CLUSTER": "Cluster", "VIRTUAL_DESKTOP": "VirtualDesktop", "DESKTOP_POOL": "DesktopPool",
    "NETWORK_DEVICE": "NetworkDevice", "LOAD_BALANCER": "LoadBalancer",
    "STORAGE_VOLUME": "StorageVolume", "DATABASE": "Database",
    "APPLICATION_INSTANCE": "ApplicationInstance", "SOFTWARE_PACKAGE": "SoftwarePackage",
}


def _graphql_data(body: dict[str, Any]) -> dict[str, Any]:
    if body.get("errors"):
        raise AssertionError(f"GraphQL errors: {body['errors']}")
    data: dict[str, Any] = body["data"]
    return data


def _nodes(connection: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["node"] for e in connection["edges"]]


def normalise(op: str, dialect: str, body: Any) -> Any:
    """One comparable shape per operation from a response body of ``dialect``
    (``ours``/``peer``: the GraphQL JSON body; ``raw``: the list of rows)."""
    if dialect == "raw":
        rows: list[dict[str, Any]] = body
        if op in ("lookup", "mutation"):
            return rows[0] if rows else None
        return rows
    data = _graphql_data(body)
    if dialect == "ours":
        if op == "lookup":
            ci = data["configurationItem"]
            return ci and {**ci, "ciClass": _CLASS_NAMES[ci["ciClass"]]}
        if op == "list":
            return _nodes(data["configurationItems"])
        if op == "nested":
            def rels(node: dict[str, Any]) -> list[dict[str, Any]]:
                return [r["item"] for r in node["relationships"]]

            return [
                {"name": s["name"], "dependsOn": [
                    {"name": c["name"],
                     "runsOn": [h["name"] for h in rels(c)] if "relationships" in c else None}
                    for c in rels(s)]}
                for s in _nodes(data["services"])
            ]
        payload = data["updateConfigurationItem"]
        if payload["errors"]:
            raise AssertionError(f"user errors: {payload['errors']}")
        return payload["configurationItem"]
    if dialect == "peer":
        if op == "lookup":
            found = data["configurationItems"]
            return found[0] if found else None
        if op == "list":
            return _nodes(data["configurationItemsConnection"])
        if op == "nested":
            return [
                {"name": s["name"], "dependsOn": [
                    {"name": c["name"],
                     "runsOn": [h["name"] for h in _nodes(c["runsOnConnection"])]
                     if "runsOnConnection" in c else None}
                    for c in _nodes(s["dependsOnConnection"])]}
                for s in _nodes(data["servicesConnection"])
            ]
        updated = data["updateConfigurationItems"]["configurationItems"]
        return updated[0] if updated else None
    raise ValueError(f"unknown dialect {dialect}")


# --- running one operation over HTTP and comparing ------------------------------------------


def http_request(op: Operation, dialect: str, ci_id: str, seed: int) -> tuple[str, Any]:
    """(path, JSON body) of one request: GraphQL for ours/peer, ``/op/<name>`` for raw."""
    if dialect == "ours":
        return "/graphql", {"query": op.ours, "variables": op.ours_vars(ci_id, seed)}
    if dialect == "peer":
        return "/graphql", {"query": op.peer, "variables": op.peer_vars(ci_id, seed)}
    return f"/op/{op.name}", op.cypher_params(ci_id, seed)


def compare_answers(
    urls: dict[str, str], ids: list[str], seed: int = 0, ops: tuple[str, ...] = ("lookup",
    "list", "nested", "mutation"),
) -> dict[str, list[Any]]:
    """Run each operation through every dialect in ``urls`` (dialect -> base URL) and assert
    the normalised answers are equal. Lookups run for every id, the mutation for the first
    (with the same seed everywhere, so all dialects write the same state). Returns the
    agreed answers: operation -> one answer per id it ran for."""
    import httpx

    answers: dict[str, list[Any]] = {}
    with httpx.Client(timeout=60) as client:
        for name in ops:
            op = OPERATIONS[name]
            for ci_id in ids if name == "lookup" else ids[:1]:
                got = {}
                for dialect, base in urls.items():
                    path, body = http_request(op, dialect, ci_id, seed)
                    response = client.post(base.rstrip("/") + path, json=body)
                    response.raise_for_status()
                    got[dialect] = normalise(name, dialect, response.json())
                first, *rest = urls
                for other in rest:
                    if got[other] != got[first]:
                        raise AssertionError(
                            f"{name} ({ci_id}): {first} and {other} differ:\n"
                            f"{first}: {got[first]}\n{other}: {got[other]}"
                        )
                answers.setdefault(name, []).append(got[first])
    return answers
