"""The documentation runs: every GraphQL operation and shell command in README.md and docs/*.md.

The product is served as the README says (``cmdb run``: demo data, then the API) against the
test Neo4j, emptied first. Every fenced block of the docs is then taken in document order (the
README, then ``docs/*.md`` by name), as a reader would, so that a mutation is seen by the
blocks after it:

- ```` ```bash ```` blocks run with bash (``-e -o pipefail``) in the project root, with the
  README's ``http://127.0.0.1:8000`` (and ``localhost:8000``) pointed at the served port and
  ``.venv/bin/cmdb`` talking to the test Neo4j. A bare ``cmdb`` is not on the PATH, as in a
  fresh shell. ``curl`` fails on an HTTP error (``--fail-with-body``).
- ```` ```graphql ```` blocks are split into their operations, each posted on its own. The
  caller is the user of the last `` `.venv/bin/cmdb token USER --roles ROLES --header` `` the
  prose names between the previous block and this one (the command is run and its header
  used, as a reader pastes it into GraphiQL), else an admin.
- Lines starting ``#>`` show output: after a shell command, what it printed; after a GraphQL
  operation, its JSON answer. They are compared with what was printed or answered, ignoring
  whitespace, with ``...`` standing for anything and ``<name>`` placeholders filled by
  ``Placeholders`` (ids by name from the graph, ``<this month>``, ``<token>``). A GraphQL answer
  with errors (top-level, or a payload's ``errors`` list) fails unless the text shows them.
- Blocks that cannot run here are listed in ``NOT_RUN`` with the reason; a block that is
  neither run nor listed fails, so new docs cannot add untested examples.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from graphql import FragmentDefinitionNode, OperationDefinitionNode, parse

from cmdb.db.driver import Database
from cmdb.localdb.manager import LocalNeo4j
from tests.auth import auth_headers
from tests.served import ROOT, Served, served
from tests.test_architecture import LAYERS, layers_drawn

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "shell"}
OUTPUT = "#>"
STEP_MARK = "@@docs-step@@"

# Blocks not run, each with why: (document, text the block contains) -> reason. Each entry must
# match exactly one block.
NOT_RUN: dict[tuple[str, str], str] = {
    ("README.md", "./scripts/run "):
        "the Quick start: it starts the development Neo4j and serves on port 8000 (this test "
        "serves the same `cmdb run` on a free port), and `./scripts/test` runs the whole suite, "
        "this test included",
    ("README.md", "tests/hardening/test_restart.py"):
        "runs the fault tests, which stop and start a Neo4j under load (minutes)",
    ("README.md", "cmdb db backup -i dev --to backups/cmdb.dump"):
        "stops and restarts the development Neo4j (tests/hardening/test_backup.py covers "
        "backup and restore on a test instance)",
    ("README.md", "bench.soak"):
        "ten minutes of load through wrk; empties the bench instance",
    ("README.md", "bench.chargeback"):
        "a benchmark of minutes over 1M usage records; empties the instance it uses",
    ("docs/operations.md", "scrape_configs:"):
        "a Prometheus configuration file, not a command",
    ("docs/operations.md", ".venv/bin/cmdb db backup -i dev "):
        "stops and restarts the development Neo4j (tests/hardening/test_backup.py covers "
        "backup and restore on a test instance)",
}

# Commands never run by this test: a block with one of them must be listed in NOT_RUN (a new
# document cannot make the test stop a database, start containers or run the suite in itself).
NEVER_RUN = re.compile(r"\bdocker\b|\bcmdb db (?:stop|start|restore|backup|install)\b|"
                       r"scripts/(?:run|test|setup)\b|\bpytest\b|-m bench\.|\bkill(?:all)?\b")

# Non-command blocks compared with what the served process did: (document, text) -> check.
SAMPLES: dict[tuple[str, str], str] = {
    ("docs/operations.md", '"msg": "request"'): "log line",
    ("README.md", "settings · logs · core"): "layers",
}


@dataclass(frozen=True)
class Block:
    doc: str  # path from the project root
    line: int  # line of the opening fence (1-based)
    lang: str
    text: str
    prose: str  # the document's text between the previous block and this one

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    def matches(self, key: tuple[str, str]) -> bool:
        return self.doc == key[0] and key[1] in self.text


FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")


def blocks_of(path: Path) -> list[Block]:
    doc = str(path.relative_to(ROOT))
    found: list[Block] = []
    prose: list[str] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            prose.append(lines[i])
            i += 1
            continue
        indent, fence, lang = len(m.group(1)), m.group(2), m.group(3).lower()
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
            i += 1
        assert i < len(lines), f"{doc}:{start + 1}: a code block is not closed"
        found.append(Block(doc, start + 1, lang, "\n".join(body) + "\n", "\n".join(prose)))
        prose = []
        i += 1
    return found


def all_blocks() -> list[Block]:
    return [b for path in DOCS for b in blocks_of(path)]


BLOCKS = all_blocks()


def exemption(block: Block) -> str | None:
    return next((reason for key, reason in NOT_RUN.items() if block.matches(key)), None)


def sample(block: Block) -> str | None:
    return next((kind for key, kind in SAMPLES.items() if block.matches(key)), None)


# ----------------------------------------------------------------------------- placeholders

JWT = r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"
PLACEHOLDER = re.compile(r"<([A-Za-z0-9][^<>\"\n]*)>")


class Placeholders:
    """Values of the ``<name>`` placeholders of the docs, read from the served demo."""

    PATTERNS = {"token": JWT}

    def __init__(self, api: Served) -> None:
        self.api = api
        self.headers = auth_headers("admin", "admin")
        self.answer: Any = None  # the last GraphQL answer, for <field> of it (<endCursor>)

    def _ok(self, query: str, **variables: Any) -> dict[str, Any]:
        r = httpx.post(f"{self.api.url}/graphql", headers=self.headers, timeout=60,
                       json={"query": query, "variables": variables})
        body: dict[str, Any] = r.json()
        assert r.status_code == 200 and "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    def value(self, name: str) -> str:
        today = datetime.now(UTC).date()
        if name == "this month":
            return today.strftime("%Y-%m")
        if name == "today":
            return today.isoformat()
        if name == "next Sunday":
            return (today + timedelta(days=7 - today.isoweekday() % 7)).isoformat()
        if name in ("order id", "subscription id"):
            field = "orders" if name == "order id" else "subscriptions"
            rows = self._ok(f"{{ {field}(first: 1) {{ id }} }}")[field]
            assert rows, f"<{name}>: there is no {field[:-1]} yet"
            return str(rows[0]["id"])
        if re.fullmatch(r"\w+", name) and (found := field_of(self.answer, name)) is not None:
            return str(found)
        if name.endswith(" id"):
            return self._id_by_name(name[: -len(" id")])
        raise AssertionError(f"<{name}>: the test does not know this placeholder "
                             "(add it to tests/e2e/test_docs.py Placeholders)")

    def _id_by_name(self, wanted: str) -> str:
        data = self._ok(
            "query ($n: String!) {"
            " cis: configurationItems(filter: {nameContains: $n, includeRetired: true}, first: 50)"
            "  { edges { node { id name } } }"
            " services(filter: {nameContains: $n, includeRetired: true}, first: 50)"
            "  { edges { node { id name } } }"
            " catalogueItems(search: $n) { id name } }", n=wanted)
        found = [e["node"] for e in data["cis"]["edges"] + data["services"]["edges"]]
        found += data["catalogueItems"]
        ids = {x["id"] for x in found if x["name"] == wanted}
        assert len(ids) == 1, f"<{wanted} id>: {len(ids)} items, services or catalogue items " \
                              f"are named {wanted!r}"
        return str(ids.pop())

    def fill(self, text: str) -> str:
        """``text`` with every placeholder replaced by its value (for GraphQL to send)."""
        return PLACEHOLDER.sub(lambda m: self.value(m.group(1)), text)

    def pattern(self, shown: str) -> re.Pattern[str]:
        """A regex for output as the docs show it: whitespace ignored, ``...`` anything."""
        parts: list[str] = []
        pos = 0
        for m in re.finditer(r"\.\.\.|…|<([A-Za-z0-9][^<>\"\n]*)>|\s+", shown):
            parts.append(re.escape(shown[pos:m.start()]))
            if m.group(1):
                name = m.group(1)
                parts.append(self.PATTERNS.get(name) or re.escape(self.value(name)))
            elif m.group(0) in ("...", "…"):
                parts.append(".*?")
            else:
                parts.append(r"\s*")
            pos = m.end()
        parts.append(re.escape(shown[pos:]))
        return re.compile("".join(parts), re.DOTALL)


def transcript(block: Block, what: str, printed: str) -> None:
    """With CMDB_DOCS_TRANSCRIPT=FILE, what each block printed or answered is appended to FILE
    (to write the output a block shows)."""
    path = os.environ.get("CMDB_DOCS_TRANSCRIPT")
    if path:
        with open(path, "a") as f:
            f.write(f"==== {block.id} {what}\n{printed.rstrip()}\n")


def field_of(answer: Any, name: str) -> Any:
    """The first value of the field ``name`` in a GraphQL answer."""
    if isinstance(answer, dict):
        if name in answer:
            return answer[name]
        answer = list(answer.values())
    if isinstance(answer, list):
        return next((v for v in (field_of(x, name) for x in answer) if v is not None), None)
    return None


def assert_shows(values: Placeholders, shown: str, actual: str, where: str) -> None:
    if not values.pattern(shown).search(actual):
        pytest.fail(f"{where}: the docs show\n{shown}\nbut it printed\n{actual[-6000:]}",
                    pytrace=False)


# ----------------------------------------------------------------------------- running blocks

TOKEN_COMMAND = re.compile(r"`(\.venv/bin/cmdb token (\S+) --roles ([\w,]+)(?: --header)?)`")


def caller(api: Served, block: Block) -> tuple[str, dict[str, str]]:
    """Who a GraphQL block runs as, and the headers it is sent with: the last token command
    (`` `.venv/bin/cmdb token USER --roles ROLES --header` ``) the prose names between the
    previous block and this one, run as the reader runs it; else an admin."""
    found = TOKEN_COMMAND.findall(block.prose)
    if not found:
        return "admin: admin", auth_headers("admin", "admin")
    command, user, roles = found[-1]
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, env=shell_env(api),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{block.id}: {command}: {done.stderr}"
    printed = done.stdout.strip()
    headers = json.loads(printed) if printed.startswith("{") else {
        "Authorization": f"Bearer {printed}"}
    return f"{user}: {roles}", headers


def operations(block: Block) -> list[tuple[str, str]]:
    """Each operation of a GraphQL block (fragments included) and the output shown after it."""
    definitions = parse(block.text).definitions
    fragments = [block.text[d.loc.start:d.loc.end] for d in definitions
                 if isinstance(d, FragmentDefinitionNode) and d.loc]
    spans = [(d.loc.start, d.loc.end) for d in definitions
             if isinstance(d, OperationDefinitionNode) and d.loc]
    assert spans, f"{block.id}: no GraphQL operation"
    assert OUTPUT not in block.text[:spans[0][0]], f"{block.id}: output before any operation"
    out: list[tuple[str, str]] = []
    for n, (start, end) in enumerate(spans):
        tail = block.text[end:spans[n + 1][0] if n + 1 < len(spans) else None]
        shown = "\n".join(line.strip()[len(OUTPUT):].strip() for line in tail.splitlines()
                          if line.strip().startswith(OUTPUT))
        out.append(("\n".join([block.text[start:end], *fragments]), shown))
    return out


def shows_errors(shown: str) -> bool:
    """Whether output shown in the docs has errors (a list of errors that is not empty)."""
    return re.search(r'"errors"\s*:\s*\[\s*[^\]\s]', shown) is not None


def payload_errors(value: Any) -> list[Any]:
    """Non-empty ``errors`` lists anywhere in an answer's data."""
    if isinstance(value, dict):
        found = [value["errors"]] if value.get("errors") else []
        return found + [e for v in value.values() for e in payload_errors(v)]
    if isinstance(value, list):
        return [e for v in value for e in payload_errors(v)]
    return []


def run_graphql(api: Served, values: Placeholders, block: Block) -> None:
    who, headers = caller(api, block)
    for n, (operation, shown) in enumerate(operations(block), 1):
        where = f"{block.id} operation {n} (as {who})"
        r = httpx.post(f"{api.url}/graphql", headers=headers, timeout=120,
                       json={"query": values.fill(operation)})
        assert r.status_code == 200, f"{where}: HTTP {r.status_code}: {r.text}"
        body = r.json()
        values.answer = body
        transcript(block, f"operation {n}", json.dumps(body, separators=(",", ":")))
        if shown:
            assert_shows(values, shown, json.dumps(body, separators=(",", ":")), where)
        if not shows_errors(shown):
            assert "errors" not in body, f"{where}: {body['errors']}"
            assert not payload_errors(body.get("data")), f"{where}: {body}"


def shell_script(block: Block, base_url: str) -> tuple[str, list[str]]:
    """The block as bash runs it against ``base_url`` (a marker printed after each command
    with output shown) and the output shown for each marked step."""
    text = block.text.replace("http://127.0.0.1:8000", base_url).replace(
        "localhost:8000", base_url.removeprefix("http://"))
    lines: list[str] = ["curl() { command curl --fail-with-body \"$@\"; }"]
    steps: list[str] = []
    shown: list[str] = []
    for line in [*text.splitlines(), ""]:
        stripped = line.strip()
        if stripped.startswith(OUTPUT):
            shown.append(stripped[len(OUTPUT):].strip())
            continue
        if shown:
            lines.append(f"printf '\\n%s\\n' '{STEP_MARK}'")
            steps.append("\n".join(shown))
            shown = []
        # A comment that looks like output must be marked as output, or nothing compares it.
        assert not re.match(r"#\s*[{\[]", stripped), (
            f"{block.id}: {stripped!r} looks like output: start it with {OUTPUT!r}")
        lines.append(line)
    return "\n".join(lines) + "\n", steps


def shell_env(api: Served) -> dict[str, str]:
    """The served process's settings (its Neo4j, home and port), and a PATH without the
    project's virtualenv, as in a fresh shell."""
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and not (Path(p) / "cmdb").exists()]
    return {**api.env, "PATH": os.pathsep.join(path)}


def run_shell(api: Served, values: Placeholders, block: Block) -> None:
    never = NEVER_RUN.search(block.text)
    assert never is None, (f"{block.id}: `{never.group(0)}` is not run by tests: list the block "
                           "in NOT_RUN (tests/e2e/test_docs.py) with the reason")
    script, steps = shell_script(block, api.url)
    # What a reader sees in the terminal: stdout and stderr as one stream.
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=ROOT,
                          env=shell_env(api), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=600)
    printed = done.stdout
    transcript(block, "output", printed)
    assert done.returncode == 0, f"{block.id}: exit {done.returncode}:\n{printed[-6000:]}"
    chunks = printed.split(f"\n{STEP_MARK}\n")
    assert len(chunks) == len(steps) + 1, f"{block.id}: {len(chunks)} outputs: {printed}"
    for n, (shown, chunk) in enumerate(zip(steps, chunks, strict=False), 1):
        assert_shows(values, shown, chunk, f"{block.id} output {n}")
    if not any(shows_errors(step) for step in steps):
        assert '"errors":[{' not in done.stdout, f"{block.id}: {done.stdout[-6000:]}"


def check_log_line(api: Served, block: Block) -> None:
    """A sample log line has the fields of the served process's own lines of its kind."""
    shown = json.loads(block.text)
    lines = [json.loads(x) for x in api.log().splitlines() if x.startswith("{")]
    same = [x for x in lines if x.get("logger") == shown["logger"]
            and x.get("msg") == shown["msg"] and "user" in x]
    assert same, f"{block.id}: no {shown['logger']} {shown['msg']!r} line in the served log"
    assert set(same[-1]) == set(shown), f"{block.id}: the log has {sorted(same[-1])}"
    for key, value in shown.items():
        assert type(same[-1][key]) is type(value), f"{block.id}: {key} is {same[-1][key]!r}"


# ----------------------------------------------------------------------------- tests


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def docs_api(neo4j_instance: LocalNeo4j, db: Database) -> AsyncIterator[Served]:
    """``cmdb run`` (demo data, then the API) on a test graph emptied of other tests' data."""
    await db.write("MATCH (n) WHERE NOT n:SchemaMigration DETACH DELETE n")
    with served(neo4j_instance, "run", ready_timeout_s=600) as server:
        yield server


@pytest.fixture(scope="module")
def values(docs_api: Served) -> Placeholders:
    return Placeholders(docs_api)


def test_every_listed_block_exists() -> None:
    """Each exemption and sample names exactly one block (none left over from old docs)."""
    for key in [*NOT_RUN, *SAMPLES]:
        assert len([b for b in BLOCKS if b.matches(key)]) == 1, f"{key} matches no single block"


def test_blocks_that_cannot_run_are_listed() -> None:
    """A block with a command tests never run (it stops a database, starts containers, runs
    the suite or a benchmark) is listed in NOT_RUN."""
    for block in BLOCKS:
        if NEVER_RUN.search(block.text) and block.lang in SHELL:
            assert exemption(block) is not None, f"{block.id} must be listed in NOT_RUN"


def test_every_doc_is_read() -> None:
    """README.md and every docs/*.md, including those added after this test was written."""
    names = {str(p.relative_to(ROOT)) for p in DOCS}
    assert {"README.md", "docs/chargeback.md", "docs/operations.md"} <= names
    assert names == {"README.md", *(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))}


RUNNERS: dict[str, Callable[[Served, Placeholders, Block], None]] = {
    **{lang: run_shell for lang in SHELL}, "graphql": run_graphql}


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"{b.id}-{b.lang or 'text'}")
def test_block(block: Block, docs_api: Served, values: Placeholders) -> None:
    reason = exemption(block)
    if reason is not None:
        pytest.skip(f"not run: {reason}")
    if sample(block) == "log line":
        check_log_line(docs_api, block)
        return
    if sample(block) == "layers":  # the drawing of the packages' layers is the code's
        assert layers_drawn(block.text) == LAYERS[:-1]  # all but __main__
        return
    runner = RUNNERS.get(block.lang)
    assert runner is not None, (
        f"{block.id}: a {block.lang or 'plain'} block is neither run nor listed in NOT_RUN "
        "(tests/e2e/test_docs.py) with the reason it cannot run")
    runner(docs_api, values, block)


# ----------------------------------------------------------------------------- the harness itself


class FixedValues(Placeholders):
    """Placeholders with given values, for checking the comparison without a served API."""

    def __init__(self, **named: str) -> None:
        self.named = named

    def value(self, name: str) -> str:
        return self.named[name]


def make_block(text: str, lang: str = "bash", prose: str = "") -> Block:
    return Block("README.md", 1, lang, text, prose)


def test_shown_output_is_compared_whitespace_aside() -> None:
    values = FixedValues(**{"server123 id": "c2bc", "this month": "2026-12"})
    printed = '{"data":{"x":{"id":"c2bc","total":"9442.40","period":"2026-12"}}}'
    assert values.pattern('{"data": {"x": {"id": "<server123 id>", ...}}}').search(printed)
    assert values.pattern('{"data":{"x":{...,"period":"<this month>"}}}').search(printed)
    assert not values.pattern('{"data":{"x":{"id":"c2bd",...}}}').search(printed)
    assert not values.pattern('{"data":{"x":{"total":"9442.41"}}}').search(printed)
    assert FixedValues().pattern('{"Authorization": "Bearer <token>"}').search(
        '{"Authorization": "Bearer aa.bb.cc"}')


def test_shell_output_is_split_by_command() -> None:
    script, steps = shell_script(make_block(
        "curl -s http://127.0.0.1:8000/a\n#> one\n#>   two\n# a comment\n"
        "curl -s localhost:8000/b\n#> three\n"), "http://127.0.0.1:5555")
    assert steps == ["one\ntwo", "three"]
    assert script.count(STEP_MARK) == 2
    assert "http://127.0.0.1:5555/a" in script and " 127.0.0.1:5555/b" in script
    assert "8000" not in script and "#>" not in script


def test_output_must_be_marked() -> None:
    """A comment that looks like output but is not marked would never be compared."""
    with pytest.raises(AssertionError, match="looks like output"):
        shell_script(make_block('curl -s http://127.0.0.1:8000/x\n# {"data": 1}\n'), "http://h:1")


def test_graphql_operations_and_their_answers() -> None:
    ops = operations(make_block('# one\n{ a }\n#> {"data":{"a":1}}\n\nmutation { b }\n', "graphql"))
    assert ops == [("{ a }", '{"data":{"a":1}}'), ("mutation { b }", "")]
    assert shows_errors('{"errors":[{"message":"x"}]}') and not shows_errors('"errors":[]')
