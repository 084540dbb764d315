// compiler.read
RETURN [{`total`: COUNT { MATCH (n:CI) WHERE n.lifecycleStatus <> 'RETIRED' AND n.nameLower CONTAINS $c0_f_name AND n[$c0_f_ak0] = $c0_f_av0 }, `rows`:
  COLLECT { MATCH (n:CI) WHERE n.lifecycleStatus <> 'RETIRED' AND n.nameLower CONTAINS $c0_f_name AND n[$c0_f_ak0] = $c0_f_av0 AND n.createdAt <= datetime($c0_c_value) AND (n.createdAt < datetime($c0_c_value) OR n.id < $c0_c_id) WITH n ORDER BY n.createdAt DESC, n.id DESC LIMIT $c0_limit RETURN {`item`: [n.name, toString(n.createdAt)], `id`: n.id, `sortValue`: n.createdAt} }}] AS data

// parameters
{
 "c0_c_id": "ci-9",
 "c0_c_value": "2026-01-01T00:00:00+00:00",
 "c0_f_ak0": "attr_env",
 "c0_f_av0": "prod",
 "c0_f_name": "web",
 "c0_limit": 11
}
