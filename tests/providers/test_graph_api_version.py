"""The Graph API version Facebook and Instagram are pinned to, and the operator's own.

Meta puts the version in the URL path (``https://graph.facebook.com/v26.0/me``), the
Facebook Login dialog's and token endpoint's included; Instagram's Business Login
window, code exchange and token grants carry none. The live tests talk to the real
hosts' URLs (respx stands in for them, no endpoint override), so what they see is what
Meta would be sent. Page shapes follow the Graph API's Page Feed, Page access token
list (``/me/accounts``) and IG Media references, with cursor paging's documented end
(no ``paging.next``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import ProviderSettings, load_settings
from gateway.errors import ConfigError
from gateway.provider_registry import load_providers
from gateway.vault import generate_key_entry
from providers import BUILTIN_PROVIDERS
from providers.base import ApiVersion
from tests.conftest import make_settings
from tests.providers.conftest import ProviderGateway
from tests.providers.stand import fixture

DEFAULT = "v26.0"
OPERATOR = "v25.0"
VERSIONS = pytest.mark.parametrize(
    ("api_version", "version"),
    [("", DEFAULT), (OPERATOR, OPERATOR)],
    ids=["default-version", "operator-version"],
)

PAGE = "1029384756"
ACCOUNTS = {
    "data": [{"access_token": "fb-page-token", "name": "Acme", "id": PAGE}],
    "paging": {"cursors": {"before": "QVFI", "after": "QVFI"}},
}
FEED = {
    "data": [{"id": f"{PAGE}_1", "message": "Open on Sunday", "created_time":
              "2026-11-20T10:00:00+0000", "from": {"id": PAGE, "name": "Acme"},
              "privacy": {"value": "EVERYONE"}, "is_published": True, "is_hidden": False,
              "timeline_visibility": "normal",
              "permalink_url": f"https://www.facebook.com/{PAGE}/posts/1"}],
    "paging": {"cursors": {"before": "QVFIa", "after": "QVFIb"}},
}  # fmt: skip
MEDIA = {
    "data": [{"id": "17895695668004550", "caption": "New in store",
              "media_type": "IMAGE", "media_product_type": "FEED",
              "timestamp": "2026-11-20T10:00:00+0000",
              "permalink": "https://www.instagram.com/p/Cx1/"}],
    "paging": {"cursors": {"before": "QVFIa", "after": "QVFIb"}},
}  # fmt: skip


@VERSIONS
async def test_every_facebook_url_carries_the_graph_version(
    provider_gateway: Any, api_version: str, version: str
) -> None:
    """Login dialog, code and token exchanges, /me, Page tokens, feed and revocation:
    all on the pinned version (v26.0, or the operator's), none on another."""
    gw: ProviderGateway = await provider_gateway("facebook", {}, api_version=api_version)
    graph = f"https://graph.facebook.com/{version}"
    short = {"access_token": "fb-short", "token_type": "bearer", "expires_in": 5400}
    long = {"access_token": "fb-long", "token_type": "bearer", "expires_in": 5183944}
    gw.router.post(f"{graph}/oauth/access_token").respond(200, json=short)
    gw.router.get(f"{graph}/oauth/access_token").respond(200, json=long)
    gw.router.get(f"{graph}/me").respond(200, json={"id": "10158", "name": "Ada Owner"})
    gw.router.get(f"{graph}/me/accounts").respond(200, json=ACCOUNTS)
    gw.router.get(f"{graph}/{PAGE}/feed").respond(200, json=FEED)
    gw.router.delete(f"{graph}/me/permissions").respond(200, json={"success": True})

    async with httpx.AsyncClient(timeout=15) as browser:
        dialog = await gw.authorize(browser)
        callback = await browser.get(
            f"{gw.url}/oauth/callback", params={"code": "c0de", "state": dialog["state"]}
        )
    async with gw.api() as api:
        [connection] = (await api.get("/v1/connections", params={"customer_id": "acme"})).json()[
            "connections"
        ]
        posts = await gw.records(connection["id"], "page.posts", page_id=PAGE)
        disconnect = await api.delete(f"/v1/connections/{connection['id']}")
    sent = [(call.request.method, call.request.url.host, call.request.url.path)
            for call in gw.router.calls]  # fmt: skip

    assert callback.status_code == 200, callback.text
    assert dialog["_url"] == f"https://www.facebook.com/{version}/dialog/oauth"
    assert [r["id"] for r in posts.json()["records"]] == [f"{PAGE}_1"]
    assert disconnect.status_code in (200, 204), disconnect.text
    assert sent == [
        ("POST", "graph.facebook.com", f"/{version}/oauth/access_token"),
        ("GET", "graph.facebook.com", f"/{version}/oauth/access_token"),
        ("GET", "graph.facebook.com", f"/{version}/me"),
        ("GET", "graph.facebook.com", f"/{version}/me/accounts"),
        ("GET", "graph.facebook.com", f"/{version}/{PAGE}/feed"),
        ("DELETE", "graph.facebook.com", f"/{version}/me/permissions"),
    ]


@VERSIONS
async def test_instagram_api_urls_carry_the_graph_version_and_its_login_urls_none(
    provider_gateway: Any, api_version: str, version: str
) -> None:
    """/me and /me/media on the pinned version; the authorization window, the code
    exchange and ig_exchange_token stay unversioned, as Business Login documents them."""
    gw: ProviderGateway = await provider_gateway("instagram", {}, api_version=api_version)
    graph = f"https://graph.instagram.com/{version}"
    gw.router.post("https://api.instagram.com/oauth/access_token").respond(
        200, json=fixture("instagram", "token")
    )
    gw.router.get("https://graph.instagram.com/access_token").respond(
        200, json=fixture("instagram", "long_lived")
    )
    gw.router.get(f"{graph}/me").respond(200, json=fixture("instagram", "me"))
    gw.router.get(f"{graph}/me/media").respond(200, json=MEDIA)

    async with httpx.AsyncClient(timeout=15) as browser:
        window = await gw.authorize(browser)
        callback = await browser.get(
            f"{gw.url}/oauth/callback", params={"code": "c0de", "state": window["state"]}
        )
    async with gw.api() as api:
        [connection] = (await api.get("/v1/connections", params={"customer_id": "acme"})).json()[
            "connections"
        ]
    media = await gw.records(connection["id"], "media")
    sent = [(call.request.url.host, call.request.url.path) for call in gw.router.calls]

    assert callback.status_code == 200, callback.text
    assert window["_url"] == "https://www.instagram.com/oauth/authorize"
    assert [r["id"] for r in media.json()["records"]] == ["17895695668004550"]
    assert sent == [
        ("api.instagram.com", "/oauth/access_token"),
        ("graph.instagram.com", "/access_token"),
        ("graph.instagram.com", f"/{version}/me"),
        ("graph.instagram.com", f"/{version}/me/media"),
    ]


def test_the_default_is_the_newest_graph_version() -> None:
    """v26.0 (November 4, 2026) for both; v21.0 is gone from Meta on January 21, 2027."""
    versions = {name: BUILTIN_PROVIDERS[name].api_version for name in ("facebook", "instagram")}

    assert {name: v.value for name, v in versions.items() if v} == {
        "facebook": DEFAULT,
        "instagram": DEFAULT,
    }


def test_an_operator_version_moves_every_facebook_endpoint_that_carried_one() -> None:
    """Dialog, token, revocation, userinfo and API base all move; nothing keeps v26.0."""
    endpoints = BUILTIN_PROVIDERS["facebook"].with_api_version(OPERATOR).oauth.endpoints

    assert (
        endpoints.authorize_url,
        endpoints.token_url,
        endpoints.revoke_url,
        endpoints.userinfo_url,
        endpoints.api_base_url,
    ) == (
        f"https://www.facebook.com/{OPERATOR}/dialog/oauth",
        f"https://graph.facebook.com/{OPERATOR}/oauth/access_token",
        f"https://graph.facebook.com/{OPERATOR}/me/permissions",
        f"https://graph.facebook.com/{OPERATOR}/me?fields=id,name",
        f"https://graph.facebook.com/{OPERATOR}",
    )


def test_a_version_not_in_the_graph_form_is_refused_by_the_provider() -> None:
    """with_api_version checks the form itself, whatever called it."""
    with pytest.raises(ValueError, match=r"not vNN\.N"):
        BUILTIN_PROVIDERS["instagram"].with_api_version("27.0")


def test_an_api_version_needs_its_own_default_in_its_form() -> None:
    """A declaration whose default is not in its own form is refused when built."""
    with pytest.raises(ValueError, match=r"'27\.0' is not vNN\.N"):
        ApiVersion(value="27.0", pattern=r"v[0-9]+\.[0-9]+", form="vNN.N")


REQUIRED = {"LINKGATE_VAULT_KEYS": generate_key_entry("k1"), "LINKGATE_SECRET_KEY": "x" * 48}


@pytest.mark.parametrize("provider", ["facebook", "instagram"])
def test_an_operator_sets_the_graph_version_in_the_file_or_the_environment(
    tmp_path: Path, provider: str
) -> None:
    """``api_version`` in [providers.NAME], or LINKGATE_PROVIDER_NAME_API_VERSION, wins."""
    config = tmp_path / "linkgate.toml"
    config.write_text(f'[providers.{provider}]\nclient_id = "c"\napi_version = "v25.0"\n')
    variable = f"LINKGATE_PROVIDER_{provider.upper()}_API_VERSION"

    from_file = load_settings(REQUIRED, config_path=config)
    from_env = load_settings({**REQUIRED, variable: "v24.0"}, config_path=config)

    assert from_file.providers[provider].api_version == "v25.0"
    assert from_env.providers[provider].api_version == "v24.0"


@pytest.mark.parametrize(
    ("provider", "version", "problem"),
    [
        ("facebook", "27.0", "api_version must be vNN.N"),
        ("facebook", "v27", "api_version must be vNN.N"),
        ("facebook", "202607", "api_version must be vNN.N"),
        ("instagram", "V27.0", "api_version must be vNN.N"),
        ("instagram", "v26.0/me", "api_version must be vNN.N"),
        ("linkedin", "v26.0", "api_version must be YYYYMM"),
        ("linkedin", "2026-08", "api_version must be YYYYMM"),
        ("linkedin", "202613", "api_version must be YYYYMM"),
        (
            "google",
            "v26.0",
            "api_version is only for a provider pinned to an API version "
            "(facebook, instagram, linkedin)",
        ),
    ],
)
def test_a_version_the_provider_cannot_take_is_a_start_up_problem(
    tmp_path: Path, provider: str, version: str, problem: str
) -> None:
    """Not vNN.N for Facebook or Instagram, not YYYYMM for LinkedIn, or set on a provider
    pinned to no version: one clear line at start-up, naming the form."""
    config = tmp_path / "linkgate.toml"
    config.write_text(f'[providers.{provider}]\nclient_id = "c"\napi_version = "{version}"\n')

    with pytest.raises(ConfigError) as raised:
        load_settings(REQUIRED, config_path=config)

    [only] = raised.value.problems
    assert only.startswith(f"[providers.{provider}]: {problem}")


async def test_an_endpoint_the_operator_sets_is_used_as_written(tmp_path: Path) -> None:
    """With api_version and an api_base_url override, the override stays as written while
    the other endpoints move to the operator's version."""
    section = ProviderSettings(
        name="facebook",
        client_id="c",
        client_secret="s",
        api_version=OPERATOR,
        endpoints={"api_base_url": "https://graph-proxy.example/v26.0"},
    )
    settings = replace(
        make_settings(f"sqlite+aiosqlite:///{tmp_path}/unused.db"),
        providers={"facebook": section},
    )
    async with httpx.AsyncClient() as http:
        registry = await load_providers(settings, http)
    endpoints = registry["facebook"].provider.oauth.endpoints

    assert endpoints.api_base_url == "https://graph-proxy.example/v26.0"
    assert endpoints.authorize_url == f"https://www.facebook.com/{OPERATOR}/dialog/oauth"
