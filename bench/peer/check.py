"""Check that our API, the peer (@neo4j/graphql) and the raw Cypher server give the same answers.

    .venv/bin/python -m bench.peer.check --seed \
        --ours http://127.0.0.1:8000 --peer http://127.0.0.1:4000 --raw http://127.0.0.1:8002 \
        --uri bolt://127.0.0.1:7687 --password "$(cat .cmdb/instances/dev/password)"

``--seed`` first adds edge cases through our API's mutations (once; names start with "0chk-"
so they sort first): names that sort differently by case, equal names (ties broken by id),
retired and DOWN VMs, a service with more than 10 dependencies (one retired, one a service),
and a component on more than 3 hosts (one link retired). Use the dev instance, never bench.
"""

from __future__ import annotations

import argparse
from typing import Any

import httpx
from neo4j import GraphDatabase

from bench.queries import compare_answers, sample_ids

P = "0chk-"


def gql(client: httpx.Client, url: str, query: str, **variables: Any) -> dict[str, Any]:
    body = client.post(url + "/graphql", json={"query": query, "variables": variables}).json()
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    payload: dict[str, Any] = next(iter(body["data"].values()))
    if payload.get("errors"):
        raise RuntimeError(payload["errors"])
    return payload


def seed(url: str) -> None:
    with httpx.Client(timeout=60) as c:
        found = gql(c, url, "query($n: String) { services(filter: {nameContains: $n}) "
                            "{ edges { node { id } } } }", n=P + "svc")
        if found["edges"]:
            print("edge cases already seeded")
            return

        def ci(name: str, cls: str, state: str = "UP") -> str:
            p = gql(c, url, "mutation($i: CreateConfigurationItemInput!) { "
                            "createConfigurationItem(input: $i) { configurationItem { id } "
                            "errors { message } } }",
                    i={"name": name, "ciClass": cls, "operationalState": state,
                       "lifecycleStatus": "IN_SERVICE"})
            ident: str = p["configurationItem"]["id"]
            return ident

        def service(name: str) -> str:
            p = gql(c, url, "mutation($i: CreateServiceInput!) { createService(input: $i) "
                            "{ service { id } errors { message } } }",
                    i={"name": name, "kind": "TECHNICAL", "operationalState": "UP",
                       "lifecycleStatus": "IN_SERVICE"})
            ident: str = p["service"]["id"]
            return ident

        def relate(src: str, dst: str, rel_type: str) -> None:
            gql(c, url, "mutation($i: RelateInput!) { relate(input: $i) "
                        "{ errors { message } } }",
                i={"sourceId": src, "targetId": dst, "type": rel_type})

        def unrelate(src: str, dst: str, rel_type: str) -> None:
            gql(c, url, "mutation($i: UnrelateInput!) { unrelate(input: $i) "
                        "{ errors { message } } }",
                i={"sourceId": src, "targetId": dst, "type": rel_type})

        def retire(ident: str) -> None:
            gql(c, url, "mutation($id: ID!) { retireConfigurationItem(id: $id) "
                        "{ errors { message } } }", id=ident)

        # VMs for `list`: case-only differences, equal names, a retired one, a DOWN one.
        hosts = [ci(f"{P}vm-{x}", "VIRTUAL_MACHINE") for x in ("a", "C", "e", "G", "i")]
        hosts += [ci(f"{P}VM-B", "VIRTUAL_MACHINE"), ci(f"{P}vm-dup", "VIRTUAL_MACHINE"),
                  ci(f"{P}vm-dup", "VIRTUAL_MACHINE"), ci(f"{P}vm-d", "VIRTUAL_MACHINE", "DOWN")]
        retire(ci(f"{P}vm-0-retired", "VIRTUAL_MACHINE"))
        # `nested`: 13 live dependencies (one a service), one retired link, one retired CI.
        svc = service(P + "svc")
        relate(svc, service(P + "svc-B"), "DEPENDS_ON")
        apps = [ci(f"{P}app-{i:02d}", "APPLICATION_INSTANCE") for i in (12, 3, 7, 1, 10, 5, 9,
                                                                       2, 11, 4, 8, 6)]
        for app in apps:
            relate(svc, app, "DEPENDS_ON")
        gone = ci(f"{P}app-00-unlinked", "APPLICATION_INSTANCE")
        relate(svc, gone, "DEPENDS_ON")
        unrelate(svc, gone, "DEPENDS_ON")
        dead = ci(f"{P}app-00-retired", "APPLICATION_INSTANCE")
        relate(svc, dead, "DEPENDS_ON")
        retire(dead)
        # app-01 runs on five hosts, the first by name through a retired link.
        app01 = apps[3]
        for host in hosts[:5]:
            relate(app01, host, "RUNS_ON")
        unrelate(app01, hosts[0], "RUNS_ON")
        print("seeded edge cases")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ours", default="http://127.0.0.1:8000")
    ap.add_argument("--peer", default="http://127.0.0.1:4000")
    ap.add_argument("--raw", default="http://127.0.0.1:8002")
    ap.add_argument("--uri", default="bolt://127.0.0.1:7687")
    ap.add_argument("--user", default="neo4j")
    ap.add_argument("--password", required=True)
    ap.add_argument("--lookups", type=int, default=20)
    ap.add_argument("--seed", action="store_true", help="add the edge cases first (dev only)")
    args = ap.parse_args()
    if args.seed:
        seed(args.ours)

    with GraphDatabase.driver(args.uri, auth=(args.user, args.password)) as driver:
        ids = sample_ids(driver, args.lookups)
        records, _, _ = driver.execute_query(
            "MATCH (n:CI) WHERE n.lifecycleStatus = 'RETIRED' RETURN n.id AS id LIMIT 1")
        ids += [r["id"] for r in records] + ["no-such-id"]
        state = driver.execute_query("MATCH (n:Item {id: $id}) RETURN n.operationalState AS s",
                                     {"id": ids[0]}).records[0]["s"]
    urls = {"ours": args.ours, "peer": args.peer, "raw": args.raw}
    try:
        answers = compare_answers(urls, ids, seed=0)
    finally:  # put the mutated CI back as it was
        restore = {"id": ids[0], "state": state}
        httpx.post(args.raw + "/op/mutation", json=restore).raise_for_status()
    found = sum(a is not None for a in answers["lookup"])
    (rows,), (nested,), (mutated,) = answers["list"], answers["nested"], answers["mutation"]
    print(f"same answers from {', '.join(urls)}: lookup {found} found + "
          f"{len(ids) - found} missing, list {len(rows)} rows, nested {len(nested)} services / "
          f"{sum(len(s['dependsOn']) for s in nested)} components / "
          f"{sum(len(c['runsOn'] or []) for s in nested for c in s['dependsOn'])} hosts, "
          f"mutation {mutated}")


if __name__ == "__main__":
    main()
