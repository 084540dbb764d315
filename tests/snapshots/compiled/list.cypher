// compiler.read
RETURN [{`rows`:
  COLLECT { MATCH (n:CI) WHERE n.ciClass IN $c0_f_classes AND n.lifecycleStatus <> 'RETIRED' AND n.operationalState IN $c0_f_state AND n.ciClass = $c0_o_eq0 AND n.operationalState = $c0_o_eq1 AND n.nameLower IS NOT NULL AND n.id IS NOT NULL WITH n ORDER BY n.ciClass ASC, n.operationalState ASC, n.nameLower ASC, n.id ASC LIMIT $c0_limit RETURN {`item`: [n.id, n.name, n.criticality]} }}] AS data

// parameters
{
 "c0_f_classes": [
  "VirtualMachine"
 ],
 "c0_f_state": [
  "UP"
 ],
 "c0_limit": 101,
 "c0_o_eq0": "VirtualMachine",
 "c0_o_eq1": "UP"
}
