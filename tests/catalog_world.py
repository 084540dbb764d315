"""A small world for catalogue tests: cost centres, users with managers and cost-centre
owners, the services a recipe builds under, and catalogue items made through the API.

Users are written with Cypher as the identity graph contract describes them (``User``,
``REPORTS_TO``, ``IN_COST_CENTRE``, ``MANAGED_BY``, ``HAS_ROLE``): the identity package will
provide the API for that; until then this fixture writes the contract directly.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import GQL

USERS = """
UNWIND $users AS u
MERGE (x:User {userName: u.userName})
SET x.id = 'user-' + u.userName, x.displayName = u.userName,
    x.email = u.userName + '@corp.example', x.active = true
"""

LINKS = """
UNWIND $users AS u
MATCH (x:User {userName: u.userName})
CALL (u, x) {
  OPTIONAL MATCH (m:User {userName: u.manager})
  FOREACH (_ IN CASE WHEN m IS NULL THEN [] ELSE [1] END | MERGE (x)-[:REPORTS_TO]->(m))
}
CALL (u, x) {
  OPTIONAL MATCH (cc:CostCentre {code: u.costCentre})
  FOREACH (_ IN CASE WHEN cc IS NULL THEN [] ELSE [1] END | MERGE (x)-[:IN_COST_CENTRE]->(cc))
}
CALL (u, x) {
  UNWIND u.owns AS code
  MATCH (cc:CostCentre {code: code})
  MERGE (cc)-[:MANAGED_BY]->(x)
}
"""

MEMBERSHIP = """
MATCH (x:User {userName: $user})
MERGE (r:Role {name: $role})
CREATE (x)-[:HAS_ROLE {since: $since, until: $until}]->(r)
"""


async def add_users(db: Any, users: list[dict[str, Any]]) -> None:
    rows = [{"manager": None, "costCentre": None, "owns": [], **u} for u in users]
    await db.write(USERS, {"users": rows})
    await db.write(LINKS, {"users": rows})


async def add_membership(db: Any, user: str, role: str, since: str | None = None,
                         until: str | None = None) -> None:
    await db.write(MEMBERSHIP, {"user": user, "role": role, "since": since, "until": until})


ERR = "errors { field message code }"
ORDER = """id status requester costCentreCode itemVersion revision currentStep attempts lastError
  subscriptionId price { currency oneOff monthly } form
  approvalSteps { index kind status approvers decidedBy reason origin why approversOnly }
  transitions { seq fromStatus toStatus by reason }
  tasks { id name status }"""

SUBMIT = ("mutation($i: SubmitOrderInput!) { submitOrder(input: $i) { created order { "
          + ORDER + " } " + ERR + " } }")
APPROVE = ("mutation($id: ID!, $step: Int) { approveOrder(id: $id, step: $step) { order { "
           + ORDER + " } " + ERR + " } }")
REJECT = ("mutation($id: ID!, $r: String!) { rejectOrder(id: $id, reason: $r) { order { "
          + ORDER + " } " + ERR + " } }")
CANCEL = ("mutation($id: ID!) { cancelOrder(id: $id, reason: \"changed my mind\") { order { "
          + ORDER + " } " + ERR + " } }")
RETRY = ("mutation($id: ID!) { retryFulfilment(id: $id) { order { " + ORDER + " } "
         + ERR + " } }")
GET_ORDER = "query($id: ID!) { order(id: $id) { " + ORDER + " } }"
SUBSCRIPTION = """id status consumer costCentreCode itemVersion startAt endAt endedBy
  service { name } configurationItems { id name lifecycleStatus ciClass }
  version { version price { oneOff monthly } }"""
DECOMMISSION = ("mutation($id: ID!) { decommissionSubscription(id: $id, reason: \"no longer "
                "needed\") { subscription { " + SUBSCRIPTION + " } " + ERR + " } }")
CREATE_ITEM = ("mutation($i: CatalogueItemInput!) { createCatalogueItem(input: $i) { item { "
               "id name status currentVersion { version } } " + ERR + " } }")
UPDATE_ITEM = ("mutation($id: ID!, $i: UpdateCatalogueItemInput!) { updateCatalogueItem(id: $id,"
               " input: $i) { item { id currentVersion { version } price { oneOff monthly } } "
               + ERR + " } }")

SITE_FORM = {
    "type": "object",
    "properties": {
        "siteName": {"type": "string", "pattern": "^[a-z0-9-]{3,30}$",
                     "title": "Site name"},
        "quotaGb": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
    },
    "required": ["siteName"],
    "additionalProperties": False,
}

SITE_RECIPE = {
    "service": "SharePoint Platform",
    "cis": [{"key": "site", "ciClass": "ApplicationInstance", "name": "sp-site-{siteName}",
             "description": "SharePoint site of {user}",
             "attributes": {"url": "https://sharepoint.corp.example/sites/{siteName}",
                            "quotaGb": "{quotaGb}"}}],
    "relationships": [
        {"source": "service:SharePoint Platform", "type": "DEPENDS_ON", "target": "ci:site",
         "properties": {"impact": "INFORMATIONAL"}},
        {"source": "ci:site", "type": "DEPENDS_ON", "target": "item:sharepoint-sql"},
    ],
}


def key() -> str:
    return str(uuid.uuid4())


async def build_world(gql: GQL, db: Any) -> dict[str, str]:
    """Cost centres, people, services and a SharePoint site item needing the manager."""
    ids: dict[str, str] = {}
    for code, name in (("CC-1200", "Trading Desk"), ("CC-1300", "IT Operations")):
        r = await gql.ok("mutation($i: CostCentreInput!) { createCostCentre(input: $i) { "
                         "costCentre { id } } }", i={"code": code, "name": name})
        ids[code] = r["createCostCentre"]["costCentre"]["id"]
    await add_users(db, [
        {"userName": "bob", "costCentre": "CC-1300", "owns": ["CC-1300"]},
        {"userName": "maryS", "costCentre": "CC-1200", "owns": ["CC-1200"], "manager": "bob"},
        {"userName": "johnW", "costCentre": "CC-1200", "manager": "maryS"},
        {"userName": "ann", "costCentre": "CC-1200", "manager": "maryS"},
        {"userName": "newbie", "costCentre": "CC-1300"},
        {"userName": "fin", "costCentre": "CC-1300", "manager": "bob"},
    ])
    for name, kind in (("Collaboration", "BUSINESS"), ("SharePoint Platform", "TECHNICAL")):
        r = await gql.ok("mutation($i: CreateServiceInput!) { createService(input: $i) { "
                         "service { id } } }", i={"name": name, "kind": kind,
                                                  "operationalState": "UP"})
        ids[name] = r["createService"]["service"]["id"]
    r = await gql.ok("mutation($i: CreateConfigurationItemInput!) { createConfigurationItem("
                     "input: $i) { configurationItem { id } } }",
                     i={"name": "sharepoint-sql", "ciClass": "DATABASE",
                        "operationalState": "UP"})
    ids["sharepoint-sql"] = r["createConfigurationItem"]["configurationItem"]["id"]
    await gql.ok("mutation($i: RelateInput!) { relate(input: $i) { errors { message } } }",
                 i={"sourceId": ids["Collaboration"], "targetId": ids["SharePoint Platform"],
                    "type": "DEPENDS_ON"})
    ids["site"] = await create_item(gql, "SharePoint collaboration site",
                                    approval=[{"kind": "MANAGER"}])
    return ids


async def create_item(gql: GQL, name: str, *, roles: list[str] | None = None,
                      approval: list[dict[str, Any]] | None = None,
                      price: dict[str, Any] | None = None,
                      form: dict[str, Any] | None = None,
                      recipe: dict[str, Any] | None = None) -> str:
    data = await gql.ok(CREATE_ITEM, i={
        "name": name, "description": f"{name} for a team",
        "formSchema": form or SITE_FORM, "roles": roles or ["requester"],
        "approvalSteps": approval or [],
        "price": price or {"currency": "EUR", "oneOff": "100.00", "monthly": "25.50"},
        "recipe": recipe or SITE_RECIPE})
    assert data["createCatalogueItem"]["errors"] == [], data
    item_id: str = data["createCatalogueItem"]["item"]["id"]
    return item_id


async def submit(gql: GQL, item_id: str, form: dict[str, Any], idem: str | None = None,
                 **extra: Any) -> dict[str, Any]:
    data = await gql.ok(SUBMIT, i={"itemId": item_id, "form": form,
                                   "idempotencyKey": idem or key(), **extra})
    out: dict[str, Any] = data["submitOrder"]
    return out
