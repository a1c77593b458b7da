"""Providers: one module per provider, each a declaration the gateway executes."""

from __future__ import annotations

from collections.abc import Mapping

from providers import (
    apple,
    calendly,
    facebook,
    google,
    instagram,
    linkedin,
    microsoft,
    sandbox,
    x,
)
from providers.base import (
    Account,
    ApiVersion,
    ClientAuth,
    ClientSecretJWT,
    Endpoints,
    ErrorKind,
    ErrorRule,
    ErrorTable,
    ErrorVerdict,
    NormalizeContext,
    OAuthSettings,
    PageStyle,
    Pagination,
    Param,
    Provider,
    Resource,
)

BUILTIN_PROVIDERS: Mapping[str, Provider] = {
    provider.name: provider
    for provider in (
        sandbox.PROVIDER,
        google.PROVIDER,
        microsoft.PROVIDER,
        apple.PROVIDER,
        linkedin.PROVIDER,
        facebook.PROVIDER,
        instagram.PROVIDER,
        x.PROVIDER,
        calendly.PROVIDER,
    )
}

__all__ = [
    "BUILTIN_PROVIDERS",
    "Account",
    "ApiVersion",
    "ClientAuth",
    "ClientSecretJWT",
    "Endpoints",
    "ErrorKind",
    "ErrorRule",
    "ErrorTable",
    "ErrorVerdict",
    "NormalizeContext",
    "OAuthSettings",
    "PageStyle",
    "Pagination",
    "Param",
    "Provider",
    "Resource",
]
