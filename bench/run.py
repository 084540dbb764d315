"""One command for the benchmarks: load (or reuse) a tier, start our API, the Neo4j GraphQL
Library peer and the raw-Cypher ceiling on the same Neo4j, drive each with wrk in turn, and
write docs/benchmarks.md and bench/results/<tier>.json.

    .venv/bin/python -m bench.run --tier M            # everything, ~10 minutes after the load
    .venv/bin/python -m bench.run --tier S --duration 5 --concurrency 1,8
    .venv/bin/python -m bench.run --tier M --soak 600  # adds a 10-minute soak of our API

Only loopback addresses are used; every load is bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import tools
from bench.idp import BenchIdP
from bench.queries import OPERATIONS, http_request, sample_ids

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
PORTS = {"ours": 8101, "raw": 8102, "peer": 8103}
TARGETS = ("ours", "peer", "raw")


@dataclass
class Measurement:
    op: str
    concurrency: int
    target: str
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    requests: int
    failures: int


# --- servers --------------------------------------------------------------------------------


# Every request to our API carries a bearer token from this stand-in identity provider.
IDP = BenchIdP()


def _wait_http(url: str, body: dict[str, Any], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    data = json.dumps(body).encode()
    while True:
        try:
            req = urllib.request.Request(url, data=data,
                                         headers={"content-type": "application/json",
                                                  "authorization": IDP.authorization()})
            with urllib.request.urlopen(req, timeout=10) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout_s}s")
        time.sleep(0.5)


def rss_mb(root: int, children: bool = True) -> float:
    """Resident memory (MB) of a process and, with ``children``, its child processes."""
    pids = {root}
    if children:
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                text = status.read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
            if int(fields.get("PPid", "0").strip()) in pids:
                pids.add(int(status.parent.name))
    total_kb = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return round(total_kb / 1024, 1)


class Servers:
    """The three HTTP front ends over the bench Neo4j, started and stopped together."""

    def __init__(self, uri: str, password: str, workers: int, logs: Path) -> None:
        self.uri, self.password, self.workers, self.logs = uri, password, workers, logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        IDP.start()
        py = sys.executable
        env = {**os.environ, "CMDB_NEO4J_URI": self.uri, "CMDB_NEO4J_USER": "neo4j",
               "CMDB_NEO4J_PASSWORD": self.password, "CMDB_MODE": "production",
               "CMDB_LOG_LEVEL": "WARNING", "CMDB_API_WORKERS": str(self.workers),
               **IDP.env()}
        self._spawn("ours", [py, "-m", "cmdb", "serve", "--host", "127.0.0.1",
                             "--port", str(PORTS["ours"]), "--workers", str(self.workers)], env)
        self._spawn("raw", [py, "-m", "bench.raw_server", "--port", str(PORTS["raw"]),
                            "--workers", str(self.workers), "--uri", self.uri,
                            "--user", "neo4j", "--password", self.password], env)
        peer = ROOT / "bench" / "peer"
        if not (peer / "node_modules").exists():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=peer, check=True,
                           stdout=subprocess.DEVNULL)
        self._spawn("peer", ["node", str(peer / "server.mjs")],
                    {**env, "NEO4J_URI": self.uri, "NEO4J_USER": "neo4j",
                     "NEO4J_PASSWORD": self.password, "PORT": str(PORTS["peer"]),
                     "NODE_ENV": "production"})
        probe = {"query": "{ __typename }"}
        _wait_http(f"http://127.0.0.1:{PORTS['ours']}/graphql", probe)
        _wait_http(f"http://127.0.0.1:{PORTS['peer']}/graphql", probe)
        _wait_http(f"http://127.0.0.1:{PORTS['raw']}/op/lookup", {"id": "none"})

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the proc
        self.procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def rss_mb(self, name: str) -> float:
        """Resident memory of a server and its worker processes."""
        return rss_mb(self.procs[name].pid)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


# --- load generation ------------------------------------------------------------------------


def write_bodies(tmp: Path, ids: list[str]) -> dict[tuple[str, str], Path]:
    files = {}
    for target in TARGETS:
        for name, op in OPERATIONS.items():
            path = tmp / f"{target}-{name}.ndjson"
            with path.open("w") as f:
                for i, ci_id in enumerate(ids):
                    _, body = http_request(op, target, ci_id, i)
                    f.write(json.dumps(body, separators=(",", ":")) + "\n")
            files[(target, name)] = path
    return files


def wrk(target: str, op: str, concurrency: int, seconds: float, bodies: Path) -> dict[str, Any]:
    path = "/graphql" if target != "raw" else f"/op/{op}"
    url = f"http://127.0.0.1:{PORTS[target]}{path}"
    threads = 1 if concurrency == 1 else 2
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{max(1, round(seconds))}s",
         "--timeout", "30s", "-s", str(ROOT / "bench" / "wrk" / "post.lua"), url],
        env={**os.environ, "BENCH_BODIES": str(bodies),
             "BENCH_AUTHORIZATION": IDP.authorization()}, capture_output=True, text=True,
        timeout=seconds + 60, check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("BENCH "))
    result: dict[str, Any] = json.loads(line[len("BENCH "):])
    return result


def measure(ops: list[str], concurrencies: list[int], seconds: float, warmup: float,
            bodies: dict[tuple[str, str], Path]) -> list[Measurement]:
    results = []
    round_no = 0
    for op in ops:
        for c in concurrencies:
            order = TARGETS[round_no % 3:] + TARGETS[: round_no % 3]  # alternate who goes first
            round_no += 1
            for target in order:
                if warmup:
                    wrk(target, op, c, warmup, bodies[(target, op)])
                r = wrk(target, op, c, seconds, bodies[(target, op)])
                secs = r["duration_us"] / 1e6
                m = Measurement(op, c, target, round(r["requests"] / secs, 1),
                                r["p50_us"] / 1000, r["p95_us"] / 1000, r["p99_us"] / 1000,
                                r["requests"], r["failures"] + r["socket_errors"])
                print(f"  {op:9} c={c:<3} {target:5} {m.rps:9.1f} req/s  p50 {m.p50_ms:8.2f} ms"
                      f"  p95 {m.p95_ms:8.2f} ms  failures {m.failures}", flush=True)
                results.append(m)
    return results


def soak(seconds: float, servers: Servers, bodies: dict[tuple[str, str], Path]) -> list[Any]:
    """Mixed reads (lookup, list, nested) and writes on our API; RSS sampled between slices."""
    samples = [(0, servers.rss_mb("ours"))]
    started = time.monotonic()
    slice_s = 30.0
    mix = ["lookup", "list", "lookup", "nested", "mutation"]
    i = 0
    while time.monotonic() - started < seconds:
        wrk("ours", mix[i % len(mix)], 8, slice_s, bodies[("ours", mix[i % len(mix)])])
        i += 1
        samples.append((round(time.monotonic() - started), servers.rss_mb("ours")))
        print(f"  soak {samples[-1][0]:5}s  ours RSS {samples[-1][1]} MB", flush=True)
    return samples


# --- machine and report ---------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in
                Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")),
               platform.processor())
    mem_kb = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                      if ln.startswith("MemTotal")))
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    peer_pkg = json.loads((ROOT / "bench" / "peer" / "package.json").read_text())
    from cmdb.localdb.manager import NEO4J_VERSION

    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(), "python": platform.python_version(), "node": node,
        "java": java.splitlines()[0] if java else "", "neo4j": f"{NEO4J_VERSION} Community",
        "neo4j_graphql": peer_pkg["dependencies"]["@neo4j/graphql"],
        "wrk": (shutil.which("wrk") and "wrk 4.1"),
    }


def write_doc(generated: str) -> None:
    """Write docs/benchmarks.md: the generated sections, then every section of the current
    file that the generator does not produce (other benchmarks write their own)."""
    def sections(text: str) -> list[tuple[str, str]]:
        # A section starts at its heading, or at a marker comment right above it.
        parts = re.split(r"\n(?=(?:<!--[^\n]*-->\n)?## )", text)
        return [(re.sub(r"^(?:<!--[^\n]*-->\n)?## ", "", part).split("\n", 1)[0].strip(), part)
                for part in parts[1:]]

    made = {title for title, _ in sections(generated)}
    kept = [body for title, body in sections(DOC.read_text() if DOC.exists() else "")
            if title not in made]
    text = generated.rstrip("\n") + "\n"
    for body in kept:
        text += "\n" + body.strip("\n") + "\n"
    DOC.write_text(text)


def render(all_results: dict[str, dict[str, Any]]) -> str:
    lines = ["# Benchmarks", "",
             "Produced by `.venv/bin/python -m bench.run --tier <S|M|L>`; raw figures in "
             "`bench/results/<tier>.json`. Load generator: wrk on the same machine, loopback "
             "only, each cell a fixed-time run after a warm-up, targets alternated. "
             "`ours` is this API (production mode, uvicorn workers as listed), `peer` the "
             "Neo4j GraphQL Library on Apollo Server (one Node process), `raw` the same answers "
             "by hand-written Cypher through the Python driver behind a minimal HTTP endpoint "
             "(the ceiling). Ratios are throughput relative to `raw`.", ""]
    impact = {k: v for k, v in all_results.items() if k.startswith("impact-")}
    # Throughput suites only; other benchmarks keep result files of other shapes here.
    suites = {k: v for k, v in all_results.items()
              if not k.startswith("impact-") and "measurements" in v and "machine" in v}
    for tier, res in sorted(suites.items()):
        m = res["machine"]
        lines += [f"## Tier {tier}", "",
                  f"Run {res['date']} on {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB, "
                  f"Linux {m['kernel']}; Python {m['python']}, Node {m['node']}, "
                  f"Neo4j {m['neo4j']}, @neo4j/graphql {m['neo4j_graphql']}. "
                  f"API workers: {res['workers']}; {res['seconds']} s per cell.", ""]
        if res.get("load"):
            lines += ["Data: " + res["load"], ""]
        lines += ["| operation | conc. | target | req/s | p50 ms | p95 ms | failures | "
                  "x raw |", "|---|---:|---|---:|---:|---:|---:|---:|"]
        rows = res["measurements"]
        raw = {(r["op"], r["concurrency"]): r["rps"] for r in rows if r["target"] == "raw"}
        for r in rows:
            base = raw.get((r["op"], r["concurrency"])) or 0
            ratio = f"{r['rps'] / base:.2f}" if base else "-"
            lines.append(f"| {r['op']} | {r['concurrency']} | {r['target']} | {r['rps']:.1f} | "
                         f"{r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['failures']} | {ratio} |")
        lines.append("")
        if res.get("memory"):
            lines += [f"Our API's resident memory (all workers): {res['memory']}", ""]
        if res.get("soak"):
            s = res["soak"]
            lines += [f"Soak ({s[-1][0]} s of mixed load at concurrency 8): RSS "
                      f"{s[0][1]} MB at start, {max(x[1] for x in s)} MB peak, {s[-1][1]} MB at "
                      "end.", ""]
        if res.get("notes"):
            lines += [res["notes"], ""]
    if impact:
        lines += ["## Bottom-up impact", "",
                  "Produced by `.venv/bin/python -m bench.impact`: one failing CI per request "
                  "(hosts, databases, VMs, applications that something rests on), sequential; "
                  "GraphQL through the API (one worker, production mode, a verified bearer "
                  "token of the `operator` role, called with `http.client` on a kept-alive "
                  "connection) versus the same statement with the same parameters through the "
                  "synchronous driver, run as the API runs reads (an auto-commit transaction on "
                  "a kept session). Target: p95 under 50 ms at 100k CIs, GraphQL within 1.5x "
                  "of raw. Since the impact statement carries each reached service's state "
                  "history for the month (the SLA minutes left need it; it was a second round "
                  "trip), the raw figure includes that work too. An operator sees everything, "
                  "so neither side carries a scope predicate; for a restricted role (a service "
                  "owner) the API also runs the visibility statement that narrows the answer, "
                  "which this benchmark does not measure.", "",
                  "| tier | CIs | requests | services reached (mean) | GraphQL p50 | GraphQL p95 "
                  "| raw p50 | raw p95 | p50 ratio | client | date |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for _, r in sorted(impact.items(), key=lambda kv: kv[1]["cis"]):
            ratio = r.get("ratio_p50") or round(r["graphql_p50_ms"] / r["raw_p50_ms"], 2)
            lines.append(f"| {r['tier']} | {r['cis']} | {r['requests']} | "
                         f"{r['services_reached_mean']} | {r['graphql_p50_ms']} ms | "
                         f"{r['graphql_p95_ms']} ms | {r['raw_p50_ms']} ms | "
                         f"{r['raw_p95_ms']} ms | {ratio}x | {r.get('client', 'httpx')} | "
                         f"{r['date']} |")
        lines.append("")
        for _, r in sorted(impact.items(), key=lambda kv: kv[1]["cis"]):
            if r.get("notes"):
                lines += [r["notes"], ""]
    if "people" in all_results:  # written by bench.people
        from bench.people import section

        lines += [section(all_results["people"]), ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tier", default="S", choices=["S", "M", "L"])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per cell")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--ops", default="lookup,list,nested,mutation")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--soak", type=float, default=0, help="seconds of soak after the suites")
    ap.add_argument("--skip-load", action="store_true", help="use the data already loaded")
    ap.add_argument("--instance", default="bench",
                    help="the project-managed Neo4j instance to load and measure (keeps "
                         "one tier per instance, e.g. bench for L and bench-m for M)")
    ap.add_argument("--no-install", action="store_true",
                    help="do not apt-get install missing wrk/node/npm: say what to install")
    args = ap.parse_args()
    tools.ensure(install=not args.no_install)  # before anything starts: no traceback later

    from neo4j import GraphDatabase

    from cmdb.localdb.manager import instance_for
    from cmdb.settings import Settings

    instance = instance_for(Settings(home=ROOT / ".cmdb"), args.instance)
    instance.ensure_running()
    load_summary = ""
    if not args.skip_load:
        out = subprocess.run([sys.executable, "-m", "bench.load", "--tier", args.tier,
                              "--seed", str(args.seed), "--instance", args.instance],
                             cwd=ROOT, check=True, capture_output=True, text=True).stdout
        print(out, end="")
        load_summary = " ".join(ln.strip() for ln in out.splitlines()[-6:])
    with GraphDatabase.driver(instance.uri, auth=(instance.user, instance.password())) as d:
        ids = sample_ids(d, 2000)
        # Warm the page cache the same way for every target: touch all items and their links.
        d.execute_query("MATCH (n:Item) OPTIONAL MATCH (n)-[r]-() "
                        "RETURN count(n.name) + count(r) AS touched", routing_="r")
    print(f"tier {args.tier}: {len(ids)} sample ids; starting servers", flush=True)

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        bodies = write_bodies(tmp, ids)
        servers = Servers(instance.uri, instance.password(), args.workers, tmp)
        try:
            servers.start()
            rss_start = servers.rss_mb("ours")
            results = measure(args.ops.split(","), [int(c) for c in args.concurrency.split(",")],
                              args.duration, args.warmup, bodies)
            rss_end = servers.rss_mb("ours")
            soak_samples = soak(args.soak, servers, bodies) if args.soak else []
        except Exception:
            for name in servers.procs:
                log = (tmp / f"{name}.log").read_text(errors="replace")[-2000:]
                print(f"--- {name} log tail ---\n{log}", file=sys.stderr)
            raise
        finally:
            servers.stop()

    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "tier": args.tier, "seed": args.seed, "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine(), "workers": args.workers, "seconds": args.duration,
        "load": load_summary, "measurements": [asdict(m) for m in results],
        "memory": f"{rss_start} MB after start, {rss_end} MB after the suites",
        "soak": soak_samples,
    }
    path = RESULTS / f"{args.tier}.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    if old.get("notes"):
        record["notes"] = old["notes"]
    path.write_text(json.dumps(record, indent=1) + "\n")
    all_results = {p.stem: json.loads(p.read_text()) for p in RESULTS.glob("*.json")}
    all_results = {k: v for k, v in all_results.items() if "measurements" in v
                   or k.startswith("impact-")}
    DOC.parent.mkdir(exist_ok=True)
    write_doc(render(all_results))
    print(f"\nwrote {path.relative_to(ROOT)} and {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
