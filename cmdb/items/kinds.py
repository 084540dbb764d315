"""What the use cases of one kind of item (CIs or services) share: reading by id, listing a
page at a time, retiring."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from cmdb.core.clock import utcnow
from cmdb.core.cypher import ItemFilter, sort_spec
from cmdb.core.models import DomainError, ItemBase, LifecycleStatus, NotFound, SortDirection
from cmdb.core.pagination import Page, page_request
from cmdb.db.driver import CountingTx, Database
from cmdb.items import writes
from cmdb.items.repository import InventoryRepository, list_items
from cmdb.settings import Settings

T = TypeVar("T", bound=ItemBase)


class ItemKindService(Generic[T]):
    """``kind`` is the item kind as rows carry it ("CI", "SERVICE"), ``label`` its node
    label, ``what`` its name in messages, ``to_model`` the row mapper."""

    kind: str
    label: str
    what: str

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.repo = InventoryRepository(db)

    def to_model(self, row: dict[str, Any]) -> T:
        raise NotImplementedError

    def check_sort(self, sort_field: str) -> None:
        """Refuse a sort this kind of item cannot have (every sort suits CIs)."""

    async def get_many(self, ids: list[str]) -> list[T | None]:
        rows = await self.repo.get_rows(ids)
        return [
            self.to_model(rows[i]) if i in rows and rows[i]["kind"] == self.kind
            else None
            for i in ids
        ]

    async def get(self, item_id: str) -> T | None:
        return (await self.get_many([item_id]))[0]

    async def list(
        self,
        f: ItemFilter,
        sort_field: str = "NAME",
        direction: SortDirection = SortDirection.ASC,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        want_total: bool = False,
    ) -> Page[T]:
        self.check_sort(sort_field)
        page = page_request(
            first, after, last, before, self.settings.default_page_size,
            self.settings.max_page_size,
        )
        return await list_items(
            self.db, self.label, f, sort_spec(sort_field, direction), page, want_total,
            self.to_model,
        )

    async def _live_in_tx(self, tx: CountingTx, item_id: str) -> tuple[dict[str, Any], T]:
        """The stored row and model of a live item, read in the writer's transaction."""
        row = await self.repo.get_in_tx(tx, item_id)
        if row is None or row["kind"] != self.kind:
            raise NotFound(self.what, item_id)
        current = self.to_model(row)
        if current.lifecycle_status is LifecycleStatus.RETIRED:
            raise DomainError.single("id", f"{self.what} {item_id!r} is retired", "CONFLICT")
        return row, current

    async def retire(self, item_id: str, reason: str | None) -> T:
        row = await self.db.write_tx(
            lambda tx: writes.retire_item(tx, item_id, self.kind, reason, utcnow()))
        return self.to_model(row)
