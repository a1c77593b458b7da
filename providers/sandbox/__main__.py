"""``python -m providers.sandbox``: run the sandbox provider locally."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from types import MappingProxyType

from providers.sandbox.runner import run
from providers.sandbox.settings import (
    DEFAULT_ACCESS_TOKEN_TTL,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REDIRECT_URI,
    ClientRegistration,
    SandboxSettings,
)


def parse_settings(argv: Sequence[str] | None = None) -> tuple[SandboxSettings, str, int]:
    parser = argparse.ArgumentParser(
        prog="python -m providers.sandbox",
        description="Run Linkgate's local sandbox OAuth 2.0 / OIDC provider.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--issuer", help="the public base URL; defaults to http://HOST:PORT")
    parser.add_argument(
        "--redirect-uri",
        action="append",
        dest="redirect_uris",
        help=f"an allowed redirect URI (repeatable; default {DEFAULT_REDIRECT_URI})",
    )
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--access-token-ttl", type=int, default=DEFAULT_ACCESS_TOKEN_TTL)
    parser.add_argument(
        "--auto-approve", action="store_true", help="skip the consent page (for scripts)"
    )
    parser.add_argument(
        "--no-control", action="store_true", help="disable the /_sandbox/ control surface"
    )
    args = parser.parse_args(argv)
    client = ClientRegistration(
        client_secret=args.client_secret,
        redirect_uris=tuple(args.redirect_uris or (DEFAULT_REDIRECT_URI,)),
    )
    settings = SandboxSettings(
        issuer=args.issuer or f"http://{args.host}:{args.port}",
        clients=MappingProxyType({args.client_id: client}),
        access_token_ttl=args.access_token_ttl,
        auto_approve=args.auto_approve,
        control_enabled=not args.no_control,
    )
    return settings, args.host, args.port


def main(argv: Sequence[str] | None = None) -> None:
    settings, host, port = parse_settings(argv)
    print(f"sandbox provider at {settings.issuer} (client_id {next(iter(settings.clients))})")
    run(settings, host=host, port=port)


if __name__ == "__main__":
    main()
