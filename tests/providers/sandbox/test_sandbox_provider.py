"""The sandbox's provider declaration and its command line."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from providers import BUILTIN_PROVIDERS
from providers.base import ClientAuth, PageStyle
from providers.sandbox import PROVIDER
from providers.sandbox.__main__ import parse_settings
from providers.sandbox.scopes import SUPPORTED_SCOPES

ROOT = Path(__file__).resolve().parents[3]


def test_provider_is_registered_as_sandbox() -> None:
    """The gateway finds the sandbox among the built-in providers under its name."""
    assert BUILTIN_PROVIDERS["sandbox"] is PROVIDER


def test_oauth_settings_declare_oidc_rotation_and_iss() -> None:
    """The sandbox is declared as OIDC with basic auth, rotating refresh and RFC 9207 iss."""
    oauth = PROVIDER.oauth
    assert oauth.oidc is True
    assert oauth.client_auth is ClientAuth.CLIENT_SECRET_BASIC
    assert oauth.rotates_refresh_token is True
    assert oauth.supports_iss_parameter is True
    assert oauth.endpoints.issuer == "http://127.0.0.1:8081"
    assert oauth.endpoints.api_base_url == "http://127.0.0.1:8081/api"


def test_scopes_are_read_only_known_and_described() -> None:
    """Every requested scope is read-only, served by the sandbox and described in plain words."""
    scopes = PROVIDER.oauth.scopes
    assert set(scopes) <= set(SUPPORTED_SCOPES)
    assert [s for s in scopes if "write" in s] == []
    assert set(scopes) <= set(PROVIDER.scope_descriptions)


def test_resources_and_their_paging() -> None:
    """profile is a single object; the collections page with page_token and limit."""
    resources = PROVIDER.resources
    assert sorted(resources) == ["comments", "conversations", "events", "posts", "profile"]
    assert resources["profile"].items_path == ()
    for name in ("posts", "comments", "conversations", "events"):
        paging = resources[name].pagination
        assert (paging.style, paging.token_param, paging.limit_param) == (
            PageStyle.PAGE_TOKEN,
            "page_token",
            "limit",
        )


def test_comments_take_a_checked_post_id() -> None:
    """The comments resource needs a post_id and refuses anything but a post id."""
    (param,) = PROVIDER.resources["comments"].params
    assert param.name == "post_id"
    assert param.accepts("post_1001")
    assert not param.accepts("../token")


def test_account_from_claims_uses_sub() -> None:
    """The linked account is the ID token's sub, named by its email."""
    account = PROVIDER.account_from_claims(
        {"sub": "usr_ada", "email": "ada@northwind.example"}, "http://127.0.0.1:8081"
    )
    assert (account.subject, account.name) == ("usr_ada", "ada@northwind.example")


def test_cli_builds_settings_from_arguments() -> None:
    """--host, --port and --redirect-uri become the issuer and the demo client's redirect URIs."""
    settings, host, port = parse_settings(
        ["--host", "127.0.0.1", "--port", "9999", "--redirect-uri", "http://127.0.0.1:1/cb"]
    )
    assert (host, port, settings.issuer) == ("127.0.0.1", 9999, "http://127.0.0.1:9999")
    assert settings.clients["linkgate-demo"].redirect_uris == ("http://127.0.0.1:1/cb",)


def test_module_runs_as_a_server() -> None:
    """``python -m providers.sandbox`` serves discovery on the given port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "providers.sandbox", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/.well-known/openid-configuration"
        deadline = time.monotonic() + 15
        while True:
            try:
                meta = httpx.get(url).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the sandbox did not start"
                time.sleep(0.1)
        assert meta["issuer"] == f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)
