"""Cypher for desktop sessions and the broker feed. The graph model: see models.py.

An ingest batch runs in one transaction: resolve users and CIs, claim the events (MERGE on
the unique ``eventId``: a concurrent batch with the same event waits and then sees it), lock
or create the sessions, then write the folded sessions and attach the events.
"""

from typing import LiteralString

SESSION_PROJECTION: LiteralString = """s {.*, start: toString(s.start), end: toString(s.end),
    createdAt: toString(s.createdAt), updatedAt: toString(s.updatedAt)}"""

RESOLVE_USERS: LiteralString = """
UNWIND $names AS name
MATCH (u:User {userNameLower: toLower(name)})
RETURN name, u.id AS id, u.userName AS userName
"""

# Desktops by name or host name (live ones), with where they run and their pool now.
RESOLVE_DESKTOPS: LiteralString = """
UNWIND $names AS name
CALL (name) {
  MATCH (d:VirtualDesktop {nameLower: name}) RETURN d
  UNION
  MATCH (d:CI {hostName: name}) WHERE d.ciClass = 'VirtualDesktop' RETURN d
}
WITH name, d WHERE d.lifecycleStatus <> 'RETIRED'
WITH name, d ORDER BY d.createdAt
WITH name, head(collect(d)) AS d
RETURN name, d.id AS id, d.name AS displayName,
       [(d)-[r:RUNS_ON]->(h:CI) WHERE r.retiredAt IS NULL | {id: h.id, name: h.name}][0] AS host,
       [(d)-[r:MEMBER_OF]->(p:DesktopPool) WHERE r.retiredAt IS NULL
        | {id: p.id, name: p.name}][0] AS pool
"""

RESOLVE_HOSTS: LiteralString = """
UNWIND $names AS name
CALL (name) {
  MATCH (h:CI {nameLower: name}) WHERE h.ciClass IN ['HypervisorHost', 'Server'] RETURN h
  UNION
  MATCH (h:CI {hostName: name}) WHERE h.ciClass IN ['HypervisorHost', 'Server'] RETURN h
}
WITH name, h WHERE h.lifecycleStatus <> 'RETIRED'
WITH name, h ORDER BY h.createdAt
WITH name, head(collect(h)) AS h
RETURN name, h.id AS id, h.name AS displayName
"""

RESOLVE_POOLS: LiteralString = """
UNWIND $names AS name
MATCH (p:DesktopPool {nameLower: name}) WHERE p.lifecycleStatus <> 'RETIRED'
WITH name, p ORDER BY p.createdAt
WITH name, head(collect(p)) AS p
RETURN name, p.id AS id, p.name AS displayName
"""

# Claim each event id; created is true for events this batch sees first.
CLAIM_EVENTS: LiteralString = """
UNWIND $events AS e
MERGE (b:BrokerEvent {eventId: e.eventId})
ON CREATE SET b.batchId = $batchId
RETURN e.eventId AS eventId, b.batchId = $batchId AS created
"""

# Lock (or create empty) the sessions of a batch, in key order, and read them.
LOCK_SESSIONS: LiteralString = (
    """
UNWIND $keys AS key
MERGE (s:DesktopSession {sessionKey: key})
ON CREATE SET s.id = randomUUID(), s.createdAt = $now, s._new = true
SET s._lock = true
REMOVE s._lock
RETURN key, coalesce(s._new, false) AS new, """
    + SESSION_PROJECTION
    + """ AS session
"""
)

# Write the folded sessions: every property (null removes), owner, and links to the CIs that
# exist. Links are replaced, so a session always points where its properties say.
WRITE_SESSIONS: LiteralString = """
UNWIND $sessions AS row
MATCH (s:DesktopSession {sessionKey: row.sessionKey})
MATCH (u:User {id: row.userId})
SET s += row.props, s.updatedAt = $now
REMOVE s._new
MERGE (u)-[:HAD_SESSION]->(s)
WITH s, row
CALL (s) {
  OPTIONAL MATCH (s)-[old:ON_DESKTOP|ON_HOST|IN_POOL]->()
  DELETE old
}
CALL (s, row) {
  OPTIONAL MATCH (d:Item {id: row.props.desktopId}) WHERE d:VirtualDesktop
  FOREACH (_ IN CASE WHEN d IS NULL THEN [] ELSE [1] END | CREATE (s)-[:ON_DESKTOP]->(d))
}
CALL (s, row) {
  OPTIONAL MATCH (h:Item {id: row.props.hostId}) WHERE h:CI
  FOREACH (_ IN CASE WHEN h IS NULL THEN [] ELSE [1] END | CREATE (s)-[:ON_HOST]->(h))
}
CALL (s, row) {
  OPTIONAL MATCH (p:Item {id: row.props.poolId}) WHERE p:DesktopPool
  FOREACH (_ IN CASE WHEN p IS NULL THEN [] ELSE [1] END | CREATE (s)-[:IN_POOL]->(p))
}
RETURN count(s) AS written
"""

ATTACH_EVENTS: LiteralString = """
UNWIND $events AS e
MATCH (b:BrokerEvent {eventId: e.eventId}), (s:DesktopSession {sessionKey: e.sessionKey})
SET b += e.props, b.receivedAt = $now
CREATE (b)-[:OF_SESSION]->(s)
RETURN count(b) AS attached
"""

# Events claimed by this batch but rejected: not stored, so a corrected resend is accepted.
RELEASE_EVENTS: LiteralString = """
UNWIND $ids AS id
MATCH (b:BrokerEvent {eventId: id, batchId: $batchId})
DETACH DELETE b
"""

# Sessions this batch created for events it then rejected.
DROP_EMPTY_SESSIONS: LiteralString = """
UNWIND $keys AS key
MATCH (s:DesktopSession {sessionKey: key})
WHERE s._new AND NOT EXISTS { (s)<-[:OF_SESSION]-(:BrokerEvent) }
DETACH DELETE s
"""

# A user's sessions overlapping [start, end), newest first.
USER_SESSIONS: LiteralString = (
    """
UNWIND $ids AS id
MATCH (u:User {id: id})
CALL (u) {
  MATCH (u)-[:HAD_SESSION]->(s:DesktopSession)
  WHERE coalesce(s.start, s.end) < $end AND coalesce(s.end, $now) >= $start
  WITH s ORDER BY coalesce(s.start, s.end) DESC, s.id LIMIT $limit
  RETURN collect("""
    + SESSION_PROJECTION
    + """) AS sessions
}
RETURN id, sessions
"""
)

SESSIONS_BY_ID: LiteralString = (
    "UNWIND $ids AS id MATCH (s:DesktopSession {id: id}) RETURN " + SESSION_PROJECTION
    + " AS session"
)
