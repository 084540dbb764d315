RETURN {`services`: {`rows`:
  COLLECT { MATCH (n:Service) WHERE n.serviceKind IN $c0_f_kinds AND n.lifecycleStatus <> 'RETIRED' WITH n ORDER BY n.nameLower ASC, n.id ASC LIMIT $c0_limit RETURN {`item`: {`name`: n.name, `relationships`:
  COLLECT { MATCH (n)-[r0:DEPENDS_ON]->(m0:Item) WHERE m0 <> n AND r0.retiredAt IS NULL AND m0.lifecycleStatus <> 'RETIRED' WITH n, r0, m0, 'OUTGOING' AS d0 ORDER BY m0.nameLower, m0.id, elementId(r0) LIMIT $p2 RETURN {`item`: CASE WHEN m0:Service THEN {`name`: m0.name} ELSE {`name`: m0.name, `relationships`:
  COLLECT { MATCH (m0)-[r1:RUNS_ON]->(m1:Item) WHERE m1 <> m0 AND r1.retiredAt IS NULL AND m1.lifecycleStatus <> 'RETIRED' WITH m0, r1, m1, 'OUTGOING' AS d1 ORDER BY m1.nameLower, m1.id, elementId(r1) LIMIT $p1 RETURN {`item`: CASE WHEN m1:Service THEN {`name`: m1.name} ELSE {`name`: m1.name} END} }} END} }}} }}} AS data

// parameters
{
 "c0_f_kinds": [
  "TECHNICAL"
 ],
 "c0_limit": 101,
 "p1": 3,
 "p2": 10
}
