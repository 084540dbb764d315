"""CMDB and service-catalogue API over a Neo4j graph."""

__version__ = "0.1.0"
