// The Neo4j GraphQL Library over the CMDB graph, served by Apollo Server: one process, one driver.
import { ApolloServer } from "@apollo/server";
import { ApolloServerPluginLandingPageDisabled } from "@apollo/server/plugin/disabled";
import { startStandaloneServer } from "@apollo/server/standalone";
import { Neo4jGraphQL } from "@neo4j/graphql";
import neo4j from "neo4j-driver";

import { typeDefs } from "./typeDefs.mjs";

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} must be set`);
  return value;
};

const driver = neo4j.driver(
  env("NEO4J_URI", "bolt://127.0.0.1:27687"),
  neo4j.auth.basic(env("NEO4J_USER", "neo4j"), env("NEO4J_PASSWORD")),
  // Same pool size as our API (cmdb/db/driver.py).
  { maxConnectionPoolSize: Number(env("NEO4J_POOL_SIZE", "50")) },
);
await driver.verifyConnectivity();

// The schema is built once at start; each request only parses (cached), validates and runs.
const schema = await new Neo4jGraphQL({ typeDefs, driver }).getSchema();
const server = new ApolloServer({
  schema,
  introspection: false,
  includeStacktraceInErrorResponses: false,
  plugins: [ApolloServerPluginLandingPageDisabled()],
});

const { url } = await startStandaloneServer(server, {
  listen: { host: env("HOST", "127.0.0.1"), port: Number(env("PORT", "4000")) },
});
console.log(`peer (@neo4j/graphql) listening at ${url}graphql, pid ${process.pid}`);

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, async () => {
    await server.stop();
    await driver.close();
    process.exit(0);
  });
}
