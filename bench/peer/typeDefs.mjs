// Type definitions for the Neo4j GraphQL Library (v7) over the CMDB graph: the parts of our
// schema.graphql the benchmark reads and writes, mapped onto the same nodes and relationships.
export const typeDefs = /* GraphQL */ `
  enum LifecycleStatus { PLANNED ORDERED IN_SERVICE MAINTENANCE RETIRED }
  enum OperationalState { UP DEGRADED DOWN UNKNOWN }
  enum Criticality { CRITICAL HIGH MEDIUM LOW }
  enum ServiceKind { BUSINESS TECHNICAL }

  "Anything in the graph (label Item): a configuration item or a service."
  interface Item {
    id: ID!
    name: String!
    nameLower: String!
    lifecycleStatus: LifecycleStatus!
    operationalState: OperationalState!
    criticality: Criticality!
  }

  "Properties of every relationship; a retired one has retiredAt set."
  type Link @relationshipProperties {
    createdAt: DateTime
    retiredAt: DateTime
  }

  type ConfigurationItem implements Item @node(labels: ["CI", "Item"]) {
    id: ID!
    name: String!
    nameLower: String!
    "Stored class name, e.g. VirtualMachine (our API shows the enum VIRTUAL_MACHINE)."
    ciClass: String!
    lifecycleStatus: LifecycleStatus!
    operationalState: OperationalState!
    criticality: Criticality!
    criticalityRank: Int
    createdAt: DateTime!
    updatedAt: DateTime! @timestamp(operations: [UPDATE])
    dependsOn: [Item!]! @relationship(type: "DEPENDS_ON", direction: OUT, properties: "Link")
    runsOn: [ConfigurationItem!]!
      @relationship(type: "RUNS_ON", direction: OUT, properties: "Link")
  }

  type Service implements Item @node(labels: ["Service", "Item"]) {
    id: ID!
    name: String!
    nameLower: String!
    serviceKind: ServiceKind!
    lifecycleStatus: LifecycleStatus!
    operationalState: OperationalState!
    criticality: Criticality!
    criticalityRank: Int
    createdAt: DateTime!
    updatedAt: DateTime! @timestamp(operations: [UPDATE])
    dependsOn: [Item!]! @relationship(type: "DEPENDS_ON", direction: OUT, properties: "Link")
  }
`;
