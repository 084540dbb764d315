RETURN {`configurationItem`: head(COLLECT { MATCH (n0:Item {id: $p0}) WHERE n0:CI RETURN {`id`: n0.id, `name`: n0.name, `ciClass`: $ciClassNames[n0.ciClass], `lifecycleStatus`: n0.lifecycleStatus, `operationalState`: n0.operationalState, `criticality`: n0.criticality} })} AS data

// parameters
{
 "p0": "ci-1"
}
