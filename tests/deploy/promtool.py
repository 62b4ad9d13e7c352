"""Running Debian's `promtool` from tests: skip when it is missing, fail instead when CI=true."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PROMTOOL_TIMEOUT_S = 120.0


def require_promtool() -> str:
    """Path of `promtool`; skips the test without it (fails when CI=true)."""
    found = shutil.which("promtool")
    if found is not None:
        return found
    reason = "promtool is not installed (apt-get install prometheus, or make system-deps)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must check the Prometheus files", pytrace=False)
    pytest.skip(reason)


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """`promtool ARGS…`, output captured; the test fails with promtool's words when it does."""
    result = subprocess.run(
        [require_promtool(), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        check=False,
    )
    command = " ".join(map(str, args))
    assert result.returncode == 0, f"promtool {command}:\n{result.stdout}{result.stderr}"
    return result
