RETURN {`node`: head(COLLECT { MATCH (n0:Item {id: $p0}) WHERE ((n0:Service AND n0.serviceKind IN $scope_kinds) OR EXISTS { MATCH (:User {userName: $scope_user})-[:MEMBER_OF_GROUP]->(:OwnerGroup)<-[:OWNED_BY]-(own:Service) MATCH (own)-[:DEPENDS_ON|RUNS_ON|MEMBER_OF|USES|INSTALLED_ON|CONTAINS*0..12]->(n0) } OR EXISTS { MATCH (mine:Subscription {consumer: $scope_me})-[:PROVISIONED|OF_SERVICE]->(n0) } OR (n0:VirtualDesktop AND (n0.attr_assignedUser = $scope_me OR EXISTS { MATCH (:User {userName: $scope_me})-[:HAD_SESSION]->(:DesktopSession)-[:ON_DESKTOP]->(n0) }))) RETURN CASE WHEN n0:Service THEN {`__typename`: 'Service', `id`: n0.id, `name`: n0.name, `healthState`: coalesce(n0.healthState, 'UNKNOWN'), `kind`: n0.serviceKind, `sla`: {`availabilityTarget`: n0.slaAvailabilityTarget}, `inMaintenance`: [n0.lifecycleStatus, n0.slaMaintenanceWindows], `ownerGroup`: [(n0)-[:OWNED_BY]->(o1:OwnerGroup) | {`name`: o1.name}][0]} ELSE {`__typename`: 'ConfigurationItem', `id`: n0.id, `name`: n0.name, `healthState`: coalesce(n0.healthState, 'UNKNOWN'), `ciClass`: $ciClassNames[n0.ciClass], `families`: $families[n0.ciClass], `identifiers`: {`fqdn`: CASE WHEN coalesce(n0.hostName, '') <> '' AND coalesce(n0.domain, '') <> '' THEN n0.hostName + '.' + n0.domain END}, `attributes`: [k IN keys(n0) WHERE k STARTS WITH 'attr_' | [substring(k, 5), n0[k]]]} END })} AS data

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
