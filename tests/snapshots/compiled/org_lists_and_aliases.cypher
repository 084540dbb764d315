// compiler.read
RETURN [COLLECT { MATCH (o0:OwnerGroup) WHERE $p0 IS NULL OR o0.nameLower CONTAINS $p0 WITH o0 ORDER BY o0.nameLower, o0.id LIMIT $p1 RETURN [o0.id, o0.name, o0.email] },
  COLLECT { MATCH (o1:CostCentre) WHERE $p2 IS NULL OR o1.nameLower CONTAINS $p2 WITH o1 ORDER BY o1.nameLower, o1.id LIMIT $p3 RETURN [coalesce(o1.code, ''), o1.name, [(o1)-[:PART_OF]->(o2:Org) | [coalesce(o2.code, ''), [(o2)-[:PART_OF]->(o3:Org) | [coalesce(o3.code, '')]][0]]][0]] }, {`rows`:
  COLLECT { MATCH (n:CI) WHERE n.ciClass IN $c4_f_classes AND n.lifecycleStatus <> 'RETIRED' AND ((n:Service AND n.serviceKind IN $scope_kinds) OR EXISTS { MATCH (mine:Subscription {consumer: $scope_me})-[:PROVISIONED|OF_SERVICE]->(n) } OR (n:VirtualDesktop AND (n.attr_assignedUser = $scope_me OR EXISTS { MATCH (:User {userName: $scope_me})-[:HAD_SESSION]->(:DesktopSession)-[:ON_DESKTOP]->(n) }))) AND n.ciClass = $c4_o_eq0 AND n.nameLower IS NOT NULL AND n.id IS NOT NULL WITH n ORDER BY n.ciClass ASC, n.nameLower ASC, n.id ASC LIMIT $c4_limit RETURN {`item`: [n.name, [(n)-[:LOCATED_IN]->(o4:Location) | [o4.name, [(o4)-[:PART_OF]->(o5:Org) | [o5.name]][0]]][0]]} }}, {`rows`:
  COLLECT { MATCH (n:CI) WHERE n.ciClass IN $c5_f_classes AND n.lifecycleStatus <> 'RETIRED' AND ((n:Service AND n.serviceKind IN $scope_kinds) OR EXISTS { MATCH (mine:Subscription {consumer: $scope_me})-[:PROVISIONED|OF_SERVICE]->(n) } OR (n:VirtualDesktop AND (n.attr_assignedUser = $scope_me OR EXISTS { MATCH (:User {userName: $scope_me})-[:HAD_SESSION]->(:DesktopSession)-[:ON_DESKTOP]->(n) }))) AND n.nameLower IS NOT NULL AND n.id IS NOT NULL WITH n ORDER BY n.nameLower ASC, n.id ASC LIMIT $c5_limit RETURN {`item`: [n.name]} }}] AS data

// parameters
{
 "c4_f_classes": [
  "VirtualMachine"
 ],
 "c4_limit": 3,
 "c4_o_eq0": "VirtualMachine",
 "c5_f_classes": [
  "HypervisorHost",
  "Server",
  "VirtualDesktop",
  "VirtualMachine"
 ],
 "c5_limit": 3,
 "p0": "ops",
 "p1": 50,
 "p2": null,
 "p3": 3,
 "scope_kinds": [
  "BUSINESS",
  "TECHNICAL"
 ],
 "scope_me": "pat"
}
