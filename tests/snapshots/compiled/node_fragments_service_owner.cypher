// compiler.read
RETURN [head(COLLECT { MATCH (n0:Item {id: $p0}) WHERE ((n0:Service AND n0.serviceKind IN $scope_kinds) OR EXISTS { MATCH (:User {userName: $scope_user})-[:MEMBER_OF_GROUP]->(:OwnerGroup)<-[:OWNED_BY]-(own:Service) MATCH (own)-[:DEPENDS_ON|RUNS_ON|MEMBER_OF|USES|INSTALLED_ON|CONTAINS*0..12]->(n0) } OR EXISTS { MATCH (mine:Subscription {consumer: $scope_me})-[:PROVISIONED|OF_SERVICE]->(n0) } OR (n0:VirtualDesktop AND (n0.attr_assignedUser = $scope_me OR EXISTS { MATCH (:User {userName: $scope_me})-[:HAD_SESSION]->(:DesktopSession)-[:ON_DESKTOP]->(n0) }))) RETURN CASE WHEN n0:Service THEN ['Service', n0.id, n0.name, coalesce(n0.healthState, 'UNKNOWN'), n0.serviceKind, [n0.slaAvailabilityTarget], [n0.lifecycleStatus, n0.slaMaintenanceWindows], [(n0)-[:OWNED_BY]->(o1:OwnerGroup) | [o1.name]][0], 'S'] ELSE ['ConfigurationItem', n0.id, n0.name, coalesce(n0.healthState, 'UNKNOWN'), $ciClassNames[n0.ciClass], $families[n0.ciClass], [CASE WHEN coalesce(n0.hostName, '') <> '' AND coalesce(n0.domain, '') <> '' THEN n0.hostName + '.' + n0.domain END], properties(n0), 'C'] END })] AS data

// parameters
{
 "p0": "svc-1",
 "scope_kinds": [
  "BUSINESS",
  "TECHNICAL"
 ],
 "scope_me": "pat",
 "scope_user": "pat"
}
