"""Cypher for alarms. Rules and the graph model: see models.py.

(:Alarm {id, source, dedupKey, openKey?, ciId, severity, status, message, count,
         firstOccurredAt, lastOccurredAt, createdAt, updatedAt,
         acknowledgedBy?, acknowledgedAt?, clearedBy?, clearedAt?})-[:RAISED_ON]->(:CI)

Writers lock the CI first (``SET _lock REMOVE _lock`` takes its write lock), so raises and
clears on one CI are serialised and each reads the open alarms the previous one committed.
"""

from typing import LiteralString

from cmdb.core.cypher import trusted

ALARM_PROJECTION: LiteralString = "a {.*, openKey: null}"

# Lock the items and read what the state computation needs, before anything changes.
LOCK_ITEMS: LiteralString = """
UNWIND $ids AS id
MATCH (c:Item {id: id})
SET c._lock = true
REMOVE c._lock
RETURN c.id AS id, c:CI AS isCi, c.lifecycleStatus AS lifecycleStatus,
       c.operationalState AS state, c.baselineState AS baseline
"""

# Create the alarm, or update the open one with the same (source, dedupKey). A row whose key is
# open on another CI changes nothing (accepted = false). Severity and message follow the
# newest occurrence; an occurrence older than the last one only counts.
UPSERT: LiteralString = (
    """
UNWIND $rows AS row
MATCH (c:Item {id: row.ciId})
MERGE (a:Alarm {openKey: row.openKey})
ON CREATE SET a.id = row.id, a.source = row.source, a.dedupKey = row.dedupKey,
              a.ciId = row.ciId, a.status = 'OPEN', a.count = 0, a.severity = row.severity,
              a.message = row.message, a.firstOccurredAt = row.at, a.lastOccurredAt = row.at,
              a.createdAt = $now
WITH c, a, row, a.id = row.id AS created, a.ciId = row.ciId AS accepted
CALL (c, a, created) {
  WITH c, a, created WHERE created
  CREATE (a)-[:RAISED_ON]->(c)
}
CALL (a, row, accepted) {
  WITH a, row, accepted, row.at >= a.lastOccurredAt AS newest WHERE accepted
  SET a.count = a.count + 1, a.updatedAt = $now,
      a.firstOccurredAt = CASE WHEN row.at < a.firstOccurredAt THEN row.at
                               ELSE a.firstOccurredAt END,
      a.severity = CASE WHEN newest THEN row.severity ELSE a.severity END,
      a.message = CASE WHEN newest THEN row.message ELSE a.message END,
      a.lastOccurredAt = CASE WHEN newest THEN row.at ELSE a.lastOccurredAt END
}
RETURN row.index AS index, created, accepted, a.ciId AS heldBy, """
    + ALARM_PROJECTION
    + """ AS alarm
"""
)

# Raises counted before, by source + NUL + eventId: what each did, and its alarm now.
SEEN_EVENTS: LiteralString = (
    """
UNWIND $keys AS key
MATCH (e:AlarmEvent {key: key})
MATCH (a:Alarm {id: e.alarmId})
RETURN key, e.outcome AS outcome, """
    + ALARM_PROJECTION
    + """ AS alarm
"""
)

# Raises just counted. CREATE, not MERGE: raises on one CI are serialised by its lock, so a
# key seen here is new unless a client reused an event id on another CI (a conflict).
RECORD_EVENTS: LiteralString = """
UNWIND $events AS e
CREATE (:AlarmEvent {key: e.key, alarmId: e.alarmId, outcome: e.outcome, at: $now})
"""

# Severities of the open alarms of each item.
OPEN_SEVERITIES: LiteralString = """
UNWIND $ids AS id
MATCH (c:Item {id: id})
CALL (c) {
  OPTIONAL MATCH (a:Alarm) USING INDEX a:Alarm(ciId, status)
  WHERE a.ciId = c.id AND a.status IN ['OPEN', 'ACKNOWLEDGED']
  RETURN collect(a.severity) AS severities
}
RETURN c.id AS id, severities
"""

# A null baseline removes the property.
SET_BASELINES: LiteralString = """
UNWIND $rows AS row
MATCH (c:Item {id: row.id})
SET c.baselineState = row.baseline
"""

GET_BY_ID: LiteralString = "MATCH (a:Alarm {id: $id}) RETURN " + ALARM_PROJECTION + " AS alarm"

GET_OPEN_BY_KEY: LiteralString = (
    "MATCH (a:Alarm {openKey: $openKey}) RETURN " + ALARM_PROJECTION + " AS alarm"
)

# The latest alarm of a (source, dedupKey), whatever its status.
GET_LATEST_BY_KEY: LiteralString = (
    """
MATCH (a:Alarm {source: $source, dedupKey: $dedupKey}) USING INDEX a:Alarm(source, dedupKey)
RETURN """
    + ALARM_PROJECTION
    + """ AS alarm
ORDER BY a.createdAt DESC, a.id DESC
LIMIT 1
"""
)

LOCK_ALARM: LiteralString = """
MATCH (a:Alarm {id: $id})
SET a._lock = true
REMOVE a._lock
RETURN a.status AS status
"""

ACKNOWLEDGE: LiteralString = (
    """
MATCH (a:Alarm {id: $id}) USING INDEX a:Alarm(id)
WHERE a.status = 'OPEN'
SET a.status = 'ACKNOWLEDGED', a.acknowledgedBy = $user, a.acknowledgedAt = $now,
    a.updatedAt = $now
RETURN """
    + ALARM_PROJECTION
    + " AS alarm"
)

# Clear an open alarm (its key is freed for a new one); returns it either way.
CLEAR: LiteralString = (
    """
MATCH (a:Alarm {id: $id})
WITH a, a.status <> 'CLEARED' AS open
CALL (a, open) {
  WITH a, open WHERE open
  SET a.status = 'CLEARED', a.clearedBy = $user, a.clearedAt = $now, a.updatedAt = $now
  REMOVE a.openKey
}
RETURN open AS cleared, """
    + ALARM_PROJECTION
    + " AS alarm"
)


def list_alarms(ci: bool, statuses: bool, severities: bool, source: bool,
                visible: LiteralString = "true") -> LiteralString:
    """Alarms newest first; only the filters given become predicates, and the most selective
    one picks the index (by hint: the planner cannot know which filter narrows most).
    ``visible`` is the caller's scope predicate on the alarm's CI ``n``."""
    if ci and statuses:
        hint = "USING INDEX a:Alarm(ciId, status)\n"
    elif ci:
        hint = "USING INDEX a:Alarm(ciId, lastOccurredAt)\n"
    elif source:
        hint = "USING INDEX a:Alarm(source, lastOccurredAt)\n"
    elif statuses:
        hint = "USING INDEX a:Alarm(status, lastOccurredAt)\n"
    else:
        hint = "USING INDEX a:Alarm(lastOccurredAt)\n"
    where = ["a.lastOccurredAt IS NOT NULL"]
    if ci:
        where.append("a.ciId = $ciId")
    if statuses:
        where.append("a.status IN $statuses")
    if severities:
        where.append("a.severity IN $severities")
    if source:
        where.append("a.source = $source")
    if visible != "true":
        where.append(f"EXISTS {{ MATCH (n:Item {{id: a.ciId}}) WHERE {visible} }}")
    return trusted(
        "MATCH (a:Alarm)\n"
        + hint
        + "WHERE "
        + " AND ".join(where)
        + "\nRETURN "
        + ALARM_PROJECTION
        + " AS alarm\nORDER BY a.lastOccurredAt DESC, a.id DESC\nLIMIT $first\n"
    )

# Metrics: alarms still open (acknowledged ones included), by severity and status.
OPEN_ALARM_COUNTS: LiteralString = """
MATCH (a:Alarm) USING INDEX a:Alarm(status, lastOccurredAt)
WHERE a.status IN ['OPEN', 'ACKNOWLEDGED'] AND a.lastOccurredAt IS NOT NULL
RETURN a.severity AS severity, a.status AS status, count(*) AS n
"""
