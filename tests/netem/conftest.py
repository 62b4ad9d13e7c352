"""The weak-link lab's tests need root, iproute2 and nftables: without them they skip with the
reason locally, and fail when `CI=true` (CI must run them)."""

from __future__ import annotations

import os

import pytest

from bench.lab.netlab import lab_available


@pytest.fixture(scope="session")
def lab_ready() -> None:
    ok, why = lab_available()
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the weak-link lab: {why}")
    pytest.skip(why)
