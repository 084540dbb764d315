// compiler.read
RETURN [{`rows`:
  COLLECT { MATCH (n:CI) WHERE n.ciClass IN $c0_f_classes AND n.lifecycleStatus <> 'RETIRED' AND n.operationalState IN $c0_f_state WITH n ORDER BY n.nameLower ASC, n.id ASC LIMIT $c0_limit RETURN {`item`: [n.id, n.name, n.criticality]} }}] AS data

// parameters
{
 "c0_f_classes": [
  "VirtualMachine"
 ],
 "c0_f_state": [
  "UP"
 ],
 "c0_limit": 101
}
