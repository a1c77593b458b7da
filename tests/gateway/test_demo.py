"""`linkgate demo` (what `make demo` runs) starts a working gateway and sandbox."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_socket


def _free_port() -> int:
    sock = free_socket()
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def test_demo_prints_a_working_portal_link_and_curl_line(tmp_path: Path) -> None:
    """The printed portal link leads to the sandbox's consent page; the curl line answers 200."""
    port, sandbox_port = _free_port(), _free_port()
    home = tmp_path / "demo"
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--port", str(port),
         "--sandbox-port", str(sandbox_port), "--home", str(home)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    output = ""
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while "Stop with Ctrl-C" not in output:
            assert time.monotonic() < deadline, output
            line = process.stdout.readline()
            assert line, f"the demo exited early:\n{output}"
            output += line
        portal = re.search(r"(http://127\.0\.0\.1:\d+/connect/\S+)", output)
        key = re.search(r"Bearer (lgk_\S+)\"", output)
        assert portal, output
        assert key, output

        with httpx.Client(timeout=10) as browser:
            page = browser.get(portal.group(1))
            start = browser.get(portal.group(1) + "/sandbox")
            consent = browser.get(start.headers["location"])
            listed = browser.get(
                f"http://127.0.0.1:{port}/v1/connections",
                params={"customer_id": "acme"},
                headers={"Authorization": f"Bearer {key.group(1)}"},
            )
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=20)

    assert page.status_code == 200
    assert "Connect Sandbox" in page.text
    assert start.status_code == 303
    assert consent.status_code == 200
    assert "Approve" in consent.text
    assert listed.status_code == 200
    assert listed.json() == {"connections": []}
    assert oct((home / "linkgate.toml").stat().st_mode & 0o777) == "0o600"
    assert oct((home / "service-key").stat().st_mode & 0o777) == "0o600"
