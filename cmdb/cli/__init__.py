"""The ``cmdb`` command line (``cmdb.cli:app``, also ``python -m cmdb``)."""

from cmdb.cli.common import connected_settings
from cmdb.cli.main import app

__all__ = ["app", "connected_settings"]
