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

from tests.conftest import free_port


def test_demo_prints_a_working_portal_link_and_curl_line(tmp_path: Path) -> None:
    """The portal link reaches the consent page, the curl line answers 200, the auditor signs in."""
    port, sandbox_port = free_port(), free_port()
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
        console = re.search(r"(http://127\.0\.0\.1:\d+/console/sign-in)", output)
        auditor_key = re.search(r"^\s+(lga_\S+)$", output, re.MULTILINE)
        assert portal, output
        assert key, output
        assert console, output
        assert auditor_key, output

        with httpx.Client(timeout=10) as browser:
            page = browser.get(portal.group(1))
            start = browser.get(portal.group(1) + "/sandbox")
            consent = browser.get(start.headers["location"])
            listed = browser.get(
                f"http://127.0.0.1:{port}/v1/connections",
                params={"customer_id": "acme"},
                headers={"Authorization": f"Bearer {key.group(1)}"},
            )
            sign_in = browser.get(console.group(1))
            token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', sign_in.text)
            assert token, sign_in.text
            signed_in = browser.post(
                console.group(1),
                data={"csrf_token": token.group(1), "credential": auditor_key.group(1)},
            )
            events = browser.get(f"http://127.0.0.1:{port}/console/events")
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
    assert (sign_in.status_code, signed_in.status_code, events.status_code) == (200, 303, 200)
    assert "Access events" in events.text
    assert auditor_key.group(1) not in events.text
    assert oct((home / "auditor-key").stat().st_mode & 0o777) == "0o600"
