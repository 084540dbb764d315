"""Causal consistency within one API process: every read and write of ``Database`` shares
the driver's bookmark manager, so that with a Neo4j cluster a read routed to a follower waits
for the writes this process made before it (docs/scaling.md)."""

from __future__ import annotations

from cmdb.db.driver import Database


async def bookmarks(db: Database) -> set[str]:
    return set(await db.driver.execute_query_bookmark_manager.get_bookmarks())


async def test_managed_and_plain_writes_leave_their_bookmarks_for_later_reads(clean_db):
    db: Database = clean_db
    before = await bookmarks(db)
    await db.write_tx(lambda tx: tx.rows("CREATE (:BookmarkProbe {n: 1})"))
    after_managed = await bookmarks(db)
    assert after_managed and after_managed != before
    await db.write("CREATE (:BookmarkProbe {n: 2})")
    after_plain = await bookmarks(db)
    assert after_plain and after_plain != after_managed
    # Reads, managed or not, see both.
    rows = await db.read_tx(lambda tx: tx.rows("MATCH (p:BookmarkProbe) RETURN p.n AS n "
                                               "ORDER BY n"))
    assert [r["n"] for r in rows] == [1, 2]
    assert [r["n"] for r in await db.read("MATCH (p:BookmarkProbe) RETURN p.n AS n "
                                          "ORDER BY n")] == [1, 2]
