"""PROFILE the list statements of the benchmark (and their main variants) on a loaded instance:
which operators ran, rows and db hits, and whether a full Sort/Top ran over every match.

    .venv/bin/python -m bench.list_plans --instance bench [--runs 5]

The statements are the ones the API sends (``build_list_query``), plus the raw-Cypher list of
the benchmark for comparison. Times are the server's, in ms, the median over ``--runs``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from neo4j import GraphDatabase

from bench.queries import LIST
from cmdb.core.cypher import ItemFilter, build_list_query, sort_spec
from cmdb.core.models import OperationalState, SortDirection
from cmdb.core.pagination import PageRequest


def shapes() -> dict[str, tuple[str, dict[str, Any]]]:
    vm_up = ItemFilter(classes=["VirtualMachine"], operational_state=[OperationalState.UP])
    name = sort_spec("NAME", SortDirection.ASC)
    first = PageRequest(100, True, None)
    out = {
        "list (VM, UP, name)": build_list_query("CI", vm_up, name, first, False),
        "list page 2": build_list_query(
            "CI", vm_up, name, PageRequest(100, True, ("vm-04", "zzz")), False),
        "list last 100": build_list_query("CI", vm_up, name, PageRequest(100, False, None), False),
        "list by created desc": build_list_query(
            "CI", vm_up, sort_spec("CREATED_AT", SortDirection.DESC), first, False),
        "VM by name": build_list_query("CI", ItemFilter(classes=["VirtualMachine"]), name, first,
                                       False),
        "CIs by name": build_list_query("CI", ItemFilter(), name, first, False),
        "nested root (TECHNICAL)": build_list_query(
            "Service", ItemFilter(service_kinds=["TECHNICAL"]), name, first, False),
        "raw list": (LIST.cypher, LIST.cypher_params("", 0)),
    }
    return out


def walk(plan: Any, depth: int = 0) -> list[tuple[int, str, int, int, str, int]]:
    """(depth, operator, rows out, db hits, details, rows in) per operator, depth first."""
    args = plan.get("args", {})
    rows_in = sum(int(c.get("rows", 0)) for c in plan.get("children", []))
    row = (depth, plan["operatorType"], int(plan.get("rows", 0)), int(plan.get("dbHits", 0)),
           str(args.get("Details", ""))[:90], rows_in)
    out = [row]
    for child in plan.get("children", []):
        out += walk(child, depth + 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instance", default="bench")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default=None, help="profile only shapes containing this")
    args = parser.parse_args()
    from bench.run import ROOT
    from cmdb.localdb.manager import instance_for
    from cmdb.settings import Settings
    instance = instance_for(Settings(home=ROOT / ".cmdb"), args.instance)
    with GraphDatabase.driver(instance.uri, auth=(instance.user, instance.password()),
                              notifications_min_severity="OFF") as d:
        for name, (text, params) in shapes().items():
            if args.only and args.only not in name:
                continue
            times = []
            for _ in range(args.runs):  # warm the plan cache and pages, then time
                t0 = time.perf_counter()
                d.execute_query(text, params)
                times.append((time.perf_counter() - t0) * 1000)
            _, summary, _ = d.execute_query("PROFILE " + text, params)
            ops = walk(summary.profile)
            hits = sum(o[3] for o in ops)
            sorts = [o for o in ops if o[1].split("@")[0] in ("Sort", "Top")]
            print(f"== {name}: {statistics.median(times):.1f} ms (client, median of "
                  f"{args.runs}), {hits:,} db hits, full sorts: "
                  f"{', '.join(f'{o[1]} of {o[5]:,} rows' for o in sorts) or 'none'}")
            for depth, op, rows, dbhits, details, _ in ops:
                print(f"  {'  ' * depth}{op:<28} rows {rows:>8,} hits {dbhits:>9,}  {details}")


if __name__ == "__main__":
    main()
