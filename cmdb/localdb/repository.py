"""The manager's statements to its own server over Bolt: a short-lived driver each time."""

from __future__ import annotations

from neo4j import Driver, GraphDatabase
from neo4j.exceptions import AuthError

from cmdb.localdb import queries as q


def _driver(uri: str, user: str, password: str) -> Driver:
    return GraphDatabase.driver(
        uri, auth=(user, password), connection_timeout=5, max_connection_pool_size=1
    )


def answer_query(uri: str, user: str, password: str) -> None:
    """Run a real query; raises (DriverError, TransientError) while databases start."""
    with _driver(uri, user, password) as driver:
        driver.execute_query(q.READY)


def accepts(uri: str, user: str, password: str) -> bool:
    """Whether the server takes this password."""
    try:
        with _driver(uri, user, password) as driver:
            driver.verify_connectivity()  # logs in, so a wrong password raises here
    except AuthError:
        return False
    return True


def change_expired_password(uri: str, user: str, old: str, new: str) -> bool:
    """Change an expired password (the only thing it may do); False if ``old`` is refused."""
    try:
        with _driver(uri, user, old) as driver:
            driver.execute_query(q.CHANGE_OWN_PASSWORD, old=old, new=new, database_="system")
    except AuthError:
        return False
    return True
