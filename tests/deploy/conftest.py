"""What the monitoring tests share: the series the gateway exports, and promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.exported_series import Family, exported_families


@pytest.fixture(scope="session")
def families() -> dict[str, Family]:
    """The gateway's instruments as the collector serves them to Prometheus."""
    return exported_families()


@pytest.fixture(scope="session")
def promtool() -> str:
    """Prometheus's own checker; a missing one fails the tests that need it, never skips them."""
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is missing: .ci/run installs it from Debian's prometheus package "
            "(apt-get download prometheus; dpkg-deb -x it; copy usr/bin/promtool onto the PATH)"
        )
    return found


def run_promtool(promtool: str, *args: str | Path, cwd: Path | None = None) -> str:
    """promtool's output; an exit status other than 0 fails the test with that output."""
    done = subprocess.run(
        [promtool, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output
