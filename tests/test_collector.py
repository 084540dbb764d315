"""The collector runs less often while bulk calculations run, and as before after them."""

from __future__ import annotations

import gc

from cmdb.core.collector import BULK_THRESHOLDS, fewer_collections


def test_thresholds_are_raised_while_calculations_run_and_restored_after_the_last() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        with fewer_collections():
            assert gc.get_threshold() == BULK_THRESHOLDS
            with fewer_collections():  # a second calculation at the same time
                assert gc.get_threshold() == BULK_THRESHOLDS
            assert gc.get_threshold() == BULK_THRESHOLDS  # the first still runs
        assert gc.get_threshold() == (700, 10, 10)
        # Thresholds already higher are kept.
        gc.set_threshold(500_000, 10, 10)
        with fewer_collections():
            assert gc.get_threshold() == (500_000, 20, 100)
        assert gc.get_threshold() == (500_000, 10, 10)
    finally:
        gc.set_threshold(*before)


def test_thresholds_are_restored_when_a_calculation_fails() -> None:
    before = gc.get_threshold()
    try:
        with fewer_collections():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
