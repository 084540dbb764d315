"""bench.run on a machine without wrk, node or npm: told what to install, no traceback."""

from __future__ import annotations

import pytest

from bench import tools


def test_nothing_to_do_when_every_program_is_there():
    tools.ensure(install=False, which=lambda prog: f"/usr/bin/{prog}")


def test_a_missing_program_is_named_with_its_package(capsys):
    with pytest.raises(SystemExit) as exit_:
        tools.ensure(install=False, which=lambda prog: None if prog == "wrk" else "/x")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "needs wrk" in err and "apt-get install wrk" in err and "scripts/setup" in err
