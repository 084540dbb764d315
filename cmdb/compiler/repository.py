"""Runs a compiled read."""

from __future__ import annotations

from typing import Any

from cmdb.compiler.models import RootSpec
from cmdb.compiler.queries import statement
from cmdb.db.driver import Database
from cmdb.identity.scope import Visibility
from cmdb.items.models import CLASS_ANCESTORS, CIClass

CLASS_NAMES = {c.value: c.name for c in CIClass}
FAMILIES = {c.value: [f.value for f in CLASS_ANCESTORS[c]] for c in CIClass}


async def run(db: Database, roots: tuple[RootSpec, ...], scope: Visibility,
              params: dict[str, Any]) -> list[Any]:
    """The values of the operation's root fields, from its one statement."""
    text = statement(roots, scope)
    if "$ciClassNames" in text:
        params["ciClassNames"] = CLASS_NAMES
    if "$families" in text:
        params["families"] = FAMILIES
    (row,) = await db.read(text, params)
    values: list[Any] = row["data"]
    return values
