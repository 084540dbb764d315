"""The local Neo4j manager's own statements."""

from typing import LiteralString

# A real query (not only an open Bolt port): the databases have started.
READY: LiteralString = "RETURN 1"

# What an expired (default) password may do: change itself. Run on the system database.
CHANGE_OWN_PASSWORD: LiteralString = "ALTER CURRENT USER SET PASSWORD FROM $old TO $new"
