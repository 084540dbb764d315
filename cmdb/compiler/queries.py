"""The Cypher of compiled reads: one statement per operation, each item projected with only
the selected fields, nested relationships as ``COLLECT`` subqueries with their own filters,
order and limit, and the caller's scope inlined wherever an item is reached.

An object comes back as the list of its selected fields' values, in selection order (``shape``
pairs them with the response keys: a GraphQL response keeps the order of its selection, which
a Neo4j map does not, and a list carries no key names over the wire). An item that may be a
CI or a service ends with its type, ``'C'`` or ``'S'``. Names that reach the text are
allow-listed schema names; every value is a parameter."""

from __future__ import annotations

import re
from functools import lru_cache
from itertools import count
from typing import LiteralString

from cmdb.compiler import models as sp
from cmdb.core.cypher import trusted
from cmdb.identity.scope import Visibility
from cmdb.items.models import RelationType

# Every compiled statement starts with this comment: traces name its spans by it.
HEADER: LiteralString = "// compiler.read\n"

ITEM_EXPRESSIONS: dict[str, str] = {
    "healthState": "coalesce({v}.healthState, 'UNKNOWN')",
    "ciClass": "$ciClassNames[{v}.ciClass]",
    "families": "$families[{v}.ciClass]",
    # All properties, filtered in shape: a map keeps the order the resolvers show.
    "attributes": "properties({v})",
    "kind": "{v}.serviceKind",
    "costRecovery": "coalesce({v}.costRecovery, 'OWNER')",
}
IDENTIFIERS: dict[str, str] = {
    "serialNumber": "{v}.serialNumber", "hostName": "{v}.hostName", "domain": "{v}.domain",
    "macAddress": "{v}.macAddress", "cloudInstanceId": "{v}.cloudInstanceId",
    "fqdn": "CASE WHEN coalesce({v}.hostName, '') <> '' AND coalesce({v}.domain, '') <> '' "
            "THEN {v}.hostName + '.' + {v}.domain END",
}
SLA: dict[str, str] = {
    "availabilityTarget": "{v}.slaAvailabilityTarget",
    "responseTargetMinutes": "{v}.slaResponseTargetMinutes",
    "restoreTargetMinutes": "{v}.slaRestoreTargetMinutes",
    "maintenanceWindows": "coalesce({v}.slaMaintenanceWindows, [])",
}
BUSINESS_VALUE: dict[str, str] = {"revenuePerHour": "{v}.revenuePerHour", "users": "{v}.users"}
OBJECTS: dict[str, dict[str, str]] = {
    "identifiers": IDENTIFIERS, "sla": SLA, "businessValue": BUSINESS_VALUE,
}
ORG_UNITS: dict[str, tuple[str, str]] = {  # field -> (relationship, label)
    "ownerGroup": ("OWNED_BY", "OwnerGroup"),
    "costCentre": ("CHARGED_TO", "CostCentre"),
    "location": ("LOCATED_IN", "Location"),
}  # (the labels are also the GraphQL type names)
ORG_FIELDS: dict[str, str] = {
    "id": "{v}.id", "name": "{v}.name", "description": "{v}.description",
    "email": "{v}.email", "code": "coalesce({v}.code, '')",
}
RELATION_TYPES = frozenset(t.value for t in RelationType)
_KEY = re.compile(r"^[_A-Za-z][_0-9A-Za-z]*$")
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def key(name: str) -> str:
    """A response key as a quoted map key (GraphQL names only)."""
    if not _KEY.match(name):
        raise ValueError(f"not a GraphQL name: {name!r}")
    return f"`{name}`"


def _map(entries: list[tuple[str, str]]) -> str:
    """An object's values in selection order (the keys are the shape's business)."""
    return "[" + ", ".join(e for _, e in entries) + "]"


def _record(entries: list[tuple[str, str]]) -> str:
    """A map of the statement's own (internal keys, not response keys)."""
    return "{" + ", ".join(f"{key(k)}: {e}" for k, e in entries) + "}"


def _object(spec: sp.ObjectSpec, exprs: dict[str, str], v: str) -> str:
    out = []
    for f in spec.fields:
        if f.name == "__typename":
            out.append((f.key, f"'{spec.type_name}'"))
        else:
            out.append((f.key, exprs[f.name].format(v=v)))
    return _map(out)


def _org(f: sp.FieldSpec, v: str, names: count[int]) -> str:
    rel, label = ORG_UNITS[f.name]
    o = f"o{next(names)}"
    return f"[({v})-[:{rel}]->({o}:{label}) | {_unit(f.sub, o, names)}][0]"


def _unit(spec: sp.ObjectSpec, o: str, names: count[int]) -> str:
    """An org unit's fields; its parent is what PART_OF leads to (org.queries)."""
    out = []
    for f in spec.fields:
        if f.name == "__typename":
            out.append((f.key, f"'{spec.type_name}'"))
        elif f.name == "parent":
            p = f"o{next(names)}"
            out.append((f.key, f"[({o})-[:PART_OF]->({p}:Org) | {_unit(f.sub, p, names)}][0]"))
        else:
            out.append((f.key, ORG_FIELDS[f.name].format(v=o)))
    return _map(out)


def _org_list(spec: sp.OrgListSpec, names: count[int]) -> str:
    if spec.label not in {label for _, label in ORG_UNITS.values()}:
        raise ValueError(f"unknown org label {spec.label}")
    o = f"o{next(names)}"
    return (f"COLLECT {{ MATCH ({o}:{spec.label}) WHERE ${spec.name_param} IS NULL OR "
            f"{o}.nameLower CONTAINS ${spec.name_param} WITH {o} ORDER BY {o}.nameLower, "
            f"{o}.id LIMIT ${spec.limit_param} RETURN {_unit(spec.unit, o, names)} }}")


def _item_fields(fields: tuple[sp.FieldSpec, ...], type_name: str, v: str,
                 names: count[int], tag: str) -> str:
    out: list[tuple[str, str]] = []
    for f in fields:
        n = f.name
        if n == "__typename":
            e = f"'{type_name}'"
        elif n in sp.PLAIN:
            e = f"{v}.{n}"
        elif n in sp.DATETIMES:
            e = f"toString({v}.{n})"
        elif n in ITEM_EXPRESSIONS:
            e = ITEM_EXPRESSIONS[n].format(v=v)
        elif n == "inMaintenance":
            e = (f"[{v}.lifecycleStatus, {v}.slaMaintenanceWindows]" if type_name == "Service"
                 else f"{v}.lifecycleStatus = 'MAINTENANCE'")
        elif n in OBJECTS:
            e = _object(f.sub, OBJECTS[n], v)
        elif n in ORG_UNITS:
            e = _org(f, v, names)
        elif n == "relationships":
            e = _relations(f.sub, v, names)
        else:
            raise ValueError(f"no projection for {type_name}.{n}")
        out.append((f.key, e))
    if tag:
        out.append(("", tag))
    return _map(out)


def item_projection(spec: sp.ItemSpec, v: str, names: count[int]) -> str:
    """The selected fields of the item ``v`` as a map, per concrete type."""
    if spec.ci is None or spec.service is None:
        only = spec.ci if spec.ci is not None else spec.service
        return _item_fields(only or (), "ConfigurationItem" if spec.ci is not None
                            else "Service", v, names, "")
    ci = _item_fields(spec.ci, "ConfigurationItem", v, names, "'C'")
    svc = _item_fields(spec.service, "Service", v, names, "'S'")
    return f"CASE WHEN {v}:Service THEN {svc} ELSE {ci} END"


_ARROWS = {"OUTGOING": ("-", "->"), "INCOMING": ("<-", "-"), "BOTH": ("-", "-")}


def _relation_values(spec: sp.RelationSpec, r: str, m: str, d: str, depth: str, path: str,
                     names: count[int]) -> list[tuple[str, str]]:
    """A relation's selected values: ``r`` the relationship, ``m`` the related item, ``d``
    the direction, ``depth`` and ``path`` as the caller's pattern gives them."""
    exprs = {
        "type": f"type({r})", "direction": d, "depth": depth, "path": path,
        "sourceId": f"startNode({r}).id", "targetId": f"endNode({r}).id",
        "properties": f"properties({r})",
        "createdAt": f"toString({r}.createdAt)", "retiredAt": f"toString({r}.retiredAt)",
        "__typename": "'Relation'",
    }
    return [(f.key, item_projection(f.sub, m, names) if f.name == "item" else exprs[f.name])
            for f in spec.fields]


def _relations(spec: sp.RelationSpec, v: str, names: count[int]) -> str:
    if spec.depth > 1:
        return _paths(spec, v, names)
    i = next(names)
    r, m, d = f"r{i}", f"m{i}", f"d{i}"
    if not set(spec.types) <= RELATION_TYPES:
        raise ValueError(f"unknown relationship types {spec.types}")
    left, right = _ARROWS[spec.direction]
    conds = [f"{m} <> {v}"]
    if not spec.include_retired:
        conds += [f"{r}.retiredAt IS NULL", f"{m}.lifecycleStatus <> 'RETIRED'"]
    conds.append("{scope:" + m + "}")  # the caller's scope on the related item
    direction = (f"CASE WHEN startNode({r}) = {v} THEN 'OUTGOING' ELSE 'INCOMING' END"
                 if spec.direction == "BOTH" else f"'{spec.direction}'")
    out = _relation_values(spec, r, m, d, "1", f"[{v}.id, {m}.id]", names)
    # The order of the resolvers' statement (items.queries.neighbours) without the keys
    # that are constant here: one direction, or one type.
    order = [f"{m}.nameLower", f"{m}.id"]
    if spec.direction == "BOTH":
        order.append(d)
    if len(spec.types) > 1:
        order.append(f"type({r})")
    order.append(f"elementId({r})")
    return (
        f"COLLECT {{ MATCH ({v}){left}[{r}:{'|'.join(spec.types)}]{right}({m}:Item) "
        f"WHERE {' AND '.join(conds)} "
        f"WITH {v}, {r}, {m}, {direction} AS {d} "
        f"ORDER BY {', '.join(order)} LIMIT ${spec.first} "
        f"RETURN {_map(out)} }}"
    )


def _paths(spec: sp.RelationSpec, v: str, names: count[int]) -> str:
    """Relationships deeper than 1: per direction asked, each item reachable within the depth
    once, by its shortest path (the first of those by ids), as items.queries.neighbours."""
    i = next(names)
    r, m, d, p = f"r{i}", f"m{i}", f"d{i}", f"p{i}"
    if not set(spec.types) <= RELATION_TYPES or not 1 < spec.depth < 100:
        raise ValueError(f"bad relationship arguments {spec}")
    on_path = [f"{{scope_path:{p}}}"]
    if not spec.include_retired:
        on_path.insert(0, f"all(x IN relationships({p}) WHERE x.retiredAt IS NULL)")
    on_item = [*on_path, f"{m} <> {v}", f"{{scope:{m}}}"]
    if not spec.include_retired:
        on_item.append(f"{m}.lifecycleStatus <> 'RETIRED'")
    branches = []
    for label in ("OUTGOING", "INCOMING") if spec.direction == "BOTH" else (spec.direction,):
        left, right = _ARROWS[label]
        pattern = f"({v}){left}[:{'|'.join(spec.types)}*1..{spec.depth}]{right}"
        # Each reachable item, then its first shortest path. (Not head(collect(p)): Neo4j
        # 5.26 refuses an aggregation in a subquery inside a map next to other fields.)
        branches.append(
            f"MATCH {p} = {pattern}({m}:Item) WHERE {' AND '.join(on_item)} "
            f"WITH DISTINCT {m} "
            f"CALL ({v}, {m}) {{ MATCH {p} = {pattern}({m}) WHERE {' AND '.join(on_path)} "
            f"WITH {p} ORDER BY length({p}), [x IN nodes({p}) | x.id], "
            f"[x IN relationships({p}) | elementId(x)] LIMIT 1 RETURN {p} }} "
            f"RETURN {m}, {p}, '{label}' AS {d}")
    out = _relation_values(spec, r, m, d, f"length({p})", f"[x IN nodes({p}) | x.id]", names)
    return (
        f"COLLECT {{ CALL ({v}) {{ {' UNION ALL '.join(branches)} }} "
        f"WITH {m}, {p}, {d}, last(relationships({p})) AS {r} "
        f"ORDER BY length({p}), {m}.nameLower, {m}.id, {d}, type({r}), elementId({r}) "
        f"LIMIT ${spec.first} RETURN {_map(out)} }}"
    )


def _lookup(spec: sp.LookupSpec, names: count[int]) -> str:
    v = f"n{next(names)}"
    conds = ["{scope:" + v + "}"]
    if spec.label is not None:
        conds.insert(0, f"{v}:{spec.label}")
    return (f"head(COLLECT {{ MATCH ({v}:Item {{id: ${spec.id_param}}}) "
            f"WHERE {' AND '.join(conds)} RETURN {item_projection(spec.item, v, names)} }})")


def renamed(text: str, prefix: str) -> str:
    """``text`` with its parameters (but the caller's scope) renamed under ``prefix``."""
    return _PARAM.sub(lambda m: m.group(0) if m.group(1).startswith("scope_")
                      else f"${prefix}{m.group(1)}", text)


def _where(conds: tuple[str, ...]) -> str:
    return ("WHERE " + " AND ".join(conds)) if conds else ""


def _connection(spec: sp.ConnectionSpec, names: count[int]) -> str:
    p = spec.prefix
    entries = []
    if spec.want_total:
        entries.append(("total", f"COUNT {{ MATCH (n:{spec.label}) "
                                 f"{renamed(_where(spec.where), p)} }}"))
    row = [("item", item_projection(spec.item, "n", names) if spec.item else "[]")]
    if spec.want_cursor:
        row += [("id", "n.id"), ("sortValue", f"n.{spec.sort_prop}")]
    entries.append(("rows", (
        f"COLLECT {{ MATCH (n:{spec.label}) {renamed(_where(spec.page_where), p)} "
        f"WITH n ORDER BY {spec.order} LIMIT ${p}limit RETURN {_record(row)} }}")))
    return _record(entries)


@lru_cache(maxsize=512)
def statement(roots: tuple[sp.RootSpec, ...], scope: Visibility) -> LiteralString:
    """The one statement of an operation. ``scope`` is the shape of the caller's scope (its
    predicate's text depends on which grants it holds, not on whose they are); its
    parameters are the same wherever it is inlined."""
    names = count()
    entries = []
    for root in roots:
        if isinstance(root.spec, str):
            entries.append((root.key, "'" + root.spec + "'"))
        elif isinstance(root.spec, sp.LookupSpec):
            entries.append((root.key, _lookup(root.spec, names)))
        elif isinstance(root.spec, sp.OrgListSpec):
            entries.append((root.key, _org_list(root.spec, names)))
        else:
            entries.append((root.key, _connection(root.spec, names)))
    text = HEADER + "RETURN " + _map(entries) + " AS data"
    if scope.everything:
        text = _ALWAYS.sub("", _SCOPES.sub("true", text))
    text = _SCOPE.sub(lambda m: "(" + scope.predicate(m.group(1)) + ")", text)
    text = _SCOPE_PATH.sub(
        lambda m: f"all(x IN nodes({m.group(1)})[1..] WHERE {scope.predicate('x')})", text)
    return trusted(text)


_SCOPE = re.compile(r"\{scope:(\w+)\}")
_SCOPE_PATH = re.compile(r"\{scope_path:(\w+)\}")
# Where the caller sees everything the placeholder goes (it is always a last condition).
_SCOPES = re.compile(r"\{scope(_path)?:\w+\}")
_ALWAYS = re.compile(r" AND true\b|(?<=WHERE )true AND |WHERE true (?!AND)")
