"""Validation of a batch's records, one by one: the candidates and relationships it goes
ahead with, and the rejections (index, reason, field) of the others. Plain Python: this
runs in a worker thread while the batch before is written."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cmdb.core.models import DomainError, RejectCode, Rejected
from cmdb.core.validation import field_path
from cmdb.core.values import attribute_properties
from cmdb.discovery.models import (
    KEY_PATTERN,
    DiscoveredItem,
    DiscoveredRelation,
    EndpointRef,
    Rejection,
)
from cmdb.discovery.reconcile import Candidate, candidate
from cmdb.items.models import RelationType
from cmdb.rollup.models import rule_property_errors

T = TypeVar("T")
_M = TypeVar("_M", bound=BaseModel)

# A relationship record as validated: its index, the record, its properties as stored.
RelationRecord = tuple[int, DiscoveredRelation, dict[str, Any]]
# One batch validated: the item candidates, the relationships, the rejections.
Prepared = tuple[list[Candidate], list[RelationRecord], list[Rejection]]


def rejection(index: int, record: str, e: Rejected) -> Rejection:
    return Rejection(index=index, record=record, code=e.code, reason=e.reason, field=e.field)


def prepare(items: list[tuple[int, Any]], relations: list[tuple[int, Any]]) -> Prepared:
    """Validate one batch's records: the candidates, the relations, the rejections."""
    rejected: list[Rejection] = []
    cands: list[Candidate] = []
    for index, raw in items:
        try:
            cands.append(candidate(index, _validated(DiscoveredItem, raw)))
        except Rejected as e:
            rejected.append(rejection(index, "item", e))
    rels: list[RelationRecord] = []
    for index, raw in relations:
        try:
            rels.append((index, *_prepare_relation(raw)))
        except Rejected as e:
            rejected.append(rejection(index, "relation", e))
    return cands, rels, rejected


def _validation_reason(e: ValidationError) -> tuple[str, str | None]:
    errs = e.errors(include_url=False)
    fields = [field_path(err["loc"], "") for err in errs]
    reason = "; ".join(
        (f"{f}: " if f else "") + str(err["msg"]).removeprefix("Value error, ")
        for f, err in zip(fields, errs, strict=True)
    )
    return reason, fields[0] or None


def _validated(model: type[T], raw: Any) -> T:
    if isinstance(raw, model):
        return raw
    if not isinstance(raw, Mapping):
        raise Rejected(RejectCode.INVALID, "a record must be a JSON object")
    try:
        return model.model_validate(dict(raw))  # type: ignore[attr-defined, no-any-return]
    except ValidationError as e:
        reason, field_name = _validation_reason(e)
        raise Rejected(RejectCode.INVALID, reason, field_name) from None


def _prepare_relation(raw: Any) -> tuple[DiscoveredRelation, dict[str, Any]]:
    r = quick_relation(raw) or _validated(DiscoveredRelation, raw)
    errors = rule_property_errors(r.properties)
    if errors:
        k, m = next(iter(errors.items()))
        raise Rejected(RejectCode.INVALID, f"properties.{k}: {m}", f"properties.{k}")
    try:
        props = attribute_properties(r.properties, "properties")
    except DomainError as e:
        raise Rejected(RejectCode.INVALID, "; ".join(f"{x.field}: {x.message}"
                                                     for x in e.errors),
                       e.errors[0].field) from None
    return r, props


_KEY = re.compile(KEY_PATTERN.removeprefix("^").removesuffix("$"))
_RELATION_FIELDS = frozenset(("source", "target", "type", "properties"))
_RELATION_TYPES = {t.value: t for t in RelationType}
_KEY_SET = frozenset(("key",))
_RELATION_SET_BARE = frozenset(("source", "target", "type"))


def quick_relation(raw: Any) -> DiscoveredRelation | None:
    """The usual record, both ends by key (``{"source": {"key": ...}, "target": {"key":
    ...}, "type": ..., "properties"?: {...}}``), checked as ``DiscoveredRelation`` would
    check it, without its general validator (a third of a large import's client time);
    None for anything else, which is then validated in full."""
    if type(raw) is not dict or not raw.keys() <= _RELATION_FIELDS:
        return None
    rel_type = raw.get("type")
    props = raw.get("properties", {})
    if type(rel_type) is not str or rel_type not in _RELATION_TYPES or type(props) is not dict \
            or not all(type(k) is str for k in props):
        return None
    ends = []
    for side in ("source", "target"):
        end = raw.get(side)
        if type(end) is not dict or len(end) != 1:
            return None
        key = end.get("key")
        if type(key) is not str or not _KEY.fullmatch(key):
            return None
        ends.append(_built(EndpointRef, {"key": key, "id": None, "identifiers": None},
                           _KEY_SET))
    return _built(DiscoveredRelation, {"source": ends[0], "target": ends[1],
                                       "type": _RELATION_TYPES[rel_type],
                                       "properties": dict(props)},
                  _RELATION_FIELDS if "properties" in raw else _RELATION_SET_BARE)


def _built(model: type[_M], values: dict[str, Any], fields_set: frozenset[str]) -> _M:
    """A model of checked values, every field given: what ``model_construct`` makes (its
    ``__dict__``, fields set, no extra or private values), at a tenth of its cost."""
    m = model.__new__(model)
    object.__setattr__(m, "__dict__", values)
    object.__setattr__(m, "__pydantic_fields_set__", set(fields_set))
    object.__setattr__(m, "__pydantic_extra__", None)
    object.__setattr__(m, "__pydantic_private__", None)
    return m
