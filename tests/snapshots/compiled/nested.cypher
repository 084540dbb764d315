// compiler.read
RETURN [{`rows`:
  COLLECT { MATCH (n:Service) WHERE n.serviceKind IN $c0_f_kinds AND n.lifecycleStatus <> 'RETIRED' AND n.serviceKind = $c0_o_eq0 AND n.nameLower IS NOT NULL AND n.id IS NOT NULL WITH n ORDER BY n.serviceKind ASC, n.nameLower ASC, n.id ASC LIMIT $c0_limit RETURN {`item`: [n.name,
  COLLECT { MATCH (n)-[r0:DEPENDS_ON]->(m0:Item) WHERE m0 <> n AND r0.retiredAt IS NULL AND m0.lifecycleStatus <> 'RETIRED' WITH n, r0, m0, 'OUTGOING' AS d0 ORDER BY m0.nameLower, m0.id, elementId(r0) LIMIT $p2 RETURN [CASE WHEN m0:Service THEN [m0.name, 'S'] ELSE [m0.name,
  COLLECT { MATCH (m0)-[r1:RUNS_ON]->(m1:Item) WHERE m1 <> m0 AND r1.retiredAt IS NULL AND m1.lifecycleStatus <> 'RETIRED' WITH m0, r1, m1, 'OUTGOING' AS d1 ORDER BY m1.nameLower, m1.id, elementId(r1) LIMIT $p1 RETURN [CASE WHEN m1:Service THEN [m1.name, 'S'] ELSE [m1.name, 'C'] END] }, 'C'] END] }]} }}] AS data

// parameters
{
 "c0_f_kinds": [
  "TECHNICAL"
 ],
 "c0_limit": 101,
 "c0_o_eq0": "TECHNICAL",
 "p1": 3,
 "p2": 10
}
