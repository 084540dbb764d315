"""A small graph for the differential test of compiled reads, written through the API.

Everything is made with GraphQL mutations as an admin (the product's own write paths), so the
graph holds what the product writes: retired items and relationships, relationship
properties, diamonds, cycles, parents of org units, attributes of several JSON types,
identifiers, names that tie when lower-cased, items only some roles see, and more CIs of one
class than a default page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

# (query, variables) -> data; raises on errors.
Run = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

OWNER = "diff-owner"  # service_owner: member of the "Payments Support" group only
REQUESTER = "diff-req"  # a virtual desktop is assigned to them

CI = """mutation($i: CreateConfigurationItemInput!) { createConfigurationItem(input: $i) {
  configurationItem { id } errors { field message code } } }"""
SERVICE = """mutation($i: CreateServiceInput!) { createService(input: $i) {
  service { id } errors { field message code } } }"""
RELATE = """mutation($i: RelateInput!) { relate(input: $i) {
  relation { type } errors { field message code } } }"""
UNRELATE = """mutation($i: UnrelateInput!) { unrelate(input: $i) {
  relation { type } errors { field message code } } }"""
GROUP = """mutation($i: OwnerGroupInput!) { createOwnerGroup(input: $i) {
  ownerGroup { id } errors { field message code } } }"""
COST_CENTRE = """mutation($i: CostCentreInput!) { createCostCentre(input: $i) {
  costCentre { id } errors { field message code } } }"""
LOCATION = """mutation($i: LocationInput!) { createLocation(input: $i) {
  location { id } errors { field message code } } }"""
RETIRE_CI = """mutation($id: ID!) { retireConfigurationItem(id: $id, reason: "gone") {
  configurationItem { id } errors { field message code } } }"""
RETIRE_SERVICE = """mutation($id: ID!) { retireService(id: $id, reason: "gone") {
  service { id } errors { field message code } } }"""
USER = """mutation($u: String!, $n: String!, $g: [ID!]!) {
  a: createUser(input: {userName: $u, displayName: $n}) { errors { field message code } }
  b: setUserOwnerGroups(userName: $u, ownerGroupIds: $g) { errors { field message code } } }"""
STATE = """mutation($ids: [ID!]!, $s: OperationalState!) {
  setOperationalState(ids: $ids, state: $s, cause: "difftest") {
    errors { field message code } } }"""


@dataclass
class World:
    ids: dict[str, str] = field(default_factory=dict)  # name -> id of every item made
    groups: dict[str, str] = field(default_factory=dict)
    cost_centres: dict[str, str] = field(default_factory=dict)  # code -> id
    locations: dict[str, str] = field(default_factory=dict)
    failed_relations: list[str] = field(default_factory=list)  # refused by the product's rules

    @property
    def all_ids(self) -> list[str]:
        return sorted({*self.ids.values(), *self.groups.values(),
                       *self.cost_centres.values(), *self.locations.values()})

    @property
    def strings(self) -> list[str]:
        names = [*self.ids, *self.groups, *self.cost_centres, *self.locations]
        return sorted({*names, *(n[:3] for n in names), OWNER, REQUESTER, "srv", "SRV", "Pay",
                       "rack", "eu", "SN-0001", "web-01.example.org", "gold", "tier", "2026-10",
                       "2026-11", "engine", "hot", "assignedUser"})


async def _payload(run: Run, query: str, variables: dict[str, Any], key: str,
                   obj: str | None) -> dict[str, Any]:
    data = await run(query, variables)
    payload = data[key]
    assert payload["errors"] == [], (key, variables, payload["errors"])
    made: dict[str, Any] = payload[obj] if obj else payload
    return made


async def build_world(run: Run) -> World:
    w = World()

    async def group(name: str) -> str:
        w.groups[name] = (await _payload(run, GROUP, {"i": {"name": name}}, "createOwnerGroup",
                                         "ownerGroup"))["id"]
        return w.groups[name]

    async def cost_centre(code: str, name: str, parent: str | None = None) -> str:
        made = await _payload(run, COST_CENTRE, {"i": {"code": code, "name": name,
                                                       "parentId": parent}},
                              "createCostCentre", "costCentre")
        w.cost_centres[code] = made["id"]
        return str(made["id"])

    async def location(name: str, parent: str | None = None) -> str:
        made = await _payload(run, LOCATION, {"i": {"name": name, "parentId": parent}},
                              "createLocation", "location")
        w.locations[name] = made["id"]
        return str(made["id"])

    async def ci(name: str, cls: str, **more: Any) -> str:
        made = await _payload(run, CI, {"i": {"name": name, "ciClass": cls, **more}},
                              "createConfigurationItem", "configurationItem")
        w.ids[name] = made["id"]
        return str(made["id"])

    async def service(name: str, kind: str, **more: Any) -> str:
        made = await _payload(run, SERVICE, {"i": {"name": name, "kind": kind, **more}},
                              "createService", "service")
        w.ids[name] = made["id"]
        return str(made["id"])

    async def relate(source: str, target: str, type_: str, **props: Any) -> None:
        data = await run(RELATE, {"i": {"sourceId": w.ids[source], "targetId": w.ids[target],
                                        "type": type_, "properties": props or None}})
        if data["relate"]["errors"]:
            w.failed_relations.append(f"{source} {type_} {target}: {data['relate']['errors']}")

    # Org units, with parents.
    payments = await group("Payments Support")
    web = await group("Web Platform")
    infra = await group("infrastructure")
    await group("Database Team")  # names are unique case-insensitively: no tie here
    corp = await cost_centre("CC-100", "Corporate")
    it = await cost_centre("CC-110", "IT", corp)
    await cost_centre("CC-111", "IT Operations", it)
    eu = await location("eu")
    dc = await location("eu-dc-1", eu)
    rack = await location("eu-dc-1 rack 7", dc)

    # Services: business and technical, one hidden from the service owner (other group).
    await service("Payments", "BUSINESS", ownerGroupId=payments, costCentreId=corp,
                  criticality="HIGH", attributes={"tier": 1, "public": True, "tags": ["pci"]})
    await service("payments", "TECHNICAL", ownerGroupId=payments, costCentreId=it,
                  attributes={"tier": "gold"})  # ties with "Payments" when lower-cased
    await service("Web Shop", "BUSINESS", ownerGroupId=web, locationId=eu,
                  attributes={"tier": 2.5, "sizes": [7, 9]})
    await service("Web Frontend", "TECHNICAL", ownerGroupId=web)
    await service("Legacy Billing", "BUSINESS", ownerGroupId=payments)

    # CIs of several classes and families.
    await ci("db-payments", "DATABASE", ownerGroupId=payments, criticality="HIGH",
             attributes={"engine": "postgres", "version": 16, "replicated": True})
    await ci("app-payments", "APPLICATION_INSTANCE", ownerGroupId=payments,
             attributes={"port": 8443, "ratio": 0.75, "flags": ["a", "b"]})
    await ci("app-web", "APPLICATION_INSTANCE", ownerGroupId=web)
    await ci("lb-01", "LOAD_BALANCER", locationId=dc, identifiers={"hostName": "lb-01",
                                                                    "domain": "example.org"})
    await ci("vm-pay-1", "VIRTUAL_MACHINE", ownerGroupId=payments, locationId=rack)
    await ci("vm-web-1", "VIRTUAL_MACHINE", ownerGroupId=web, locationId=rack)
    await ci("esx-01", "HYPERVISOR_HOST", ownerGroupId=infra, locationId=rack,
             identifiers={"serialNumber": "SN-0001", "hostName": "esx-01"})
    await ci("esx-02", "HYPERVISOR_HOST", ownerGroupId=infra, locationId=rack,
             identifiers={"serialNumber": "SN-0002", "macAddress": "00:11:22:33:44:55"})
    await ci("cluster-a", "CLUSTER", ownerGroupId=infra)
    await ci("san-vol-1", "STORAGE_VOLUME", costCentreId=it)
    await ci("core-switch", "NETWORK_DEVICE", locationId=dc,
             identifiers={"hostName": "core-switch", "cloudInstanceId": "i-0abc"})
    await ci("nginx-1.25", "SOFTWARE_PACKAGE")
    await ci("desk-req", "VIRTUAL_DESKTOP", attributes={"assignedUser": REQUESTER})
    await ci("desk-other", "VIRTUAL_DESKTOP", attributes={"assignedUser": "someone-else"})
    await ci("pool-a", "DESKTOP_POOL")
    await ci("old-server", "SERVER", attributes={"note": "decommissioned"})
    await ci("Old-Server", "SERVER")  # ties with the one above when lower-cased
    await ci("srv-web-1", "SERVER", identifiers={"hostName": "web-01",
                                                  "domain": "example.org"})
    # More servers than a default page (50), names that sort with ties.
    for batch in range(0, 56, 8):  # side by side: independent items, no relationships yet
        await asyncio.gather(*(
            ci(f"srv-{n % 28:02d}" if n < 28 else f"SRV-{n % 28:02d}", "SERVER",
               criticality=("LOW", "MEDIUM", "HIGH", "CRITICAL")[n % 4],
               operationalState=("UP", "DOWN", "DEGRADED", "UNKNOWN")[n % 4],
               attributes={"rackUnit": n, "hot": n % 2 == 0})
            for n in range(batch, batch + 8)))

    # Relationships: a chain, a diamond, cycles, membership groups, properties.
    await relate("Payments", "payments", "DEPENDS_ON", required=True, weight=2)
    await relate("Payments", "app-payments", "DEPENDS_ON", note="direct")
    await relate("payments", "app-payments", "DEPENDS_ON")  # diamond to app-payments
    await relate("app-payments", "db-payments", "DEPENDS_ON", required=True)
    await relate("db-payments", "vm-pay-1", "RUNS_ON")
    await relate("app-payments", "vm-pay-1", "RUNS_ON")  # a second diamond at vm-pay-1
    await relate("vm-pay-1", "esx-01", "RUNS_ON")
    await relate("vm-web-1", "esx-02", "RUNS_ON")
    await relate("esx-01", "cluster-a", "MEMBER_OF")
    await relate("esx-02", "cluster-a", "MEMBER_OF")
    await relate("esx-01", "san-vol-1", "USES", share=0.5)
    await relate("esx-02", "san-vol-1", "USES", share=0.5)
    await relate("Web Shop", "Web Frontend", "DEPENDS_ON")
    await relate("Web Frontend", "app-web", "DEPENDS_ON")
    await relate("Web Frontend", "lb-01", "DEPENDS_ON")
    await relate("app-web", "vm-web-1", "RUNS_ON")
    await relate("lb-01", "core-switch", "CONNECTS_TO")
    await relate("nginx-1.25", "vm-web-1", "INSTALLED_ON")
    await relate("desk-req", "pool-a", "MEMBER_OF")
    await relate("desk-other", "pool-a", "MEMBER_OF")
    await relate("Web Shop", "Payments", "DEPENDS_ON")  # the shop pays through Payments
    # Cycles: A DEPENDS_ON B DEPENDS_ON A, and a service cycle.
    await relate("srv-00", "srv-01", "DEPENDS_ON")
    await relate("srv-01", "srv-00", "DEPENDS_ON")
    await relate("srv-01", "srv-02", "CONNECTS_TO", speed=10)
    await relate("srv-02", "srv-01", "CONNECTS_TO", speed=10)
    await relate("Legacy Billing", "Payments", "DEPENDS_ON")
    await relate("payments", "Legacy Billing", "DEPENDS_ON")  # a cycle through Payments
    await relate("Payments", "srv-03", "DEPENDS_ON")
    # Retired relationships and items.
    await relate("Web Frontend", "srv-04", "DEPENDS_ON", note="to be removed")
    data = await run(UNRELATE, {"i": {"sourceId": w.ids["Web Frontend"],
                                      "targetId": w.ids["srv-04"], "type": "DEPENDS_ON",
                                      "reason": "moved"}})
    assert data["unrelate"]["errors"] == [], data
    await relate("app-web", "old-server", "RUNS_ON")
    await _payload(run, RETIRE_CI, {"id": w.ids["old-server"]}, "retireConfigurationItem", None)
    await relate("Legacy Billing", "srv-05", "DEPENDS_ON")
    await _payload(run, RETIRE_SERVICE, {"id": w.ids["Legacy Billing"]}, "retireService", None)

    # States that roll up, and the users the roles read as.
    await run(STATE, {"ids": [w.ids["esx-01"]], "s": "DOWN"})
    await run(STATE, {"ids": [w.ids["db-payments"]], "s": "DEGRADED"})
    made = await run(USER, {"u": OWNER, "n": "Diff Owner", "g": [payments]})
    assert made == {"a": {"errors": []}, "b": {"errors": []}}, made
    made = await run(USER, {"u": REQUESTER, "n": "Diff Requester", "g": []})
    assert made == {"a": {"errors": []}, "b": {"errors": []}}, made
    return w
