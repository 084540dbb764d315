// compiler.read
RETURN [head(COLLECT { MATCH (n0:Item {id: $p0}) WHERE n0:CI RETURN [n0.id, n0.name, $ciClassNames[n0.ciClass], n0.lifecycleStatus, n0.operationalState, n0.criticality] })] AS data

// parameters
{
 "p0": "ci-1"
}
