"""Any OpenID Connect issuer, described by its discovery document.

OpenID Connect Discovery 1.0 §3 lists the metadata; RFC 8414 §3.3 and OIDC
Discovery §4.3 require that the ``issuer`` in the document equals the issuer
the configuration names, which the gateway checks before calling this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policies.vocabulary import Field, Record, Visibility
from providers.base import (
    ClientAuth,
    Endpoints,
    JSONObject,
    NormalizeContext,
    OAuthSettings,
    Provider,
    Resource,
    oidc_account,
)

DEFAULT_SCOPES = ("openid", "email", "profile")

# Standard claims (OIDC Core §5.1) and their data categories.
_PROFILE_CLAIMS = {
    "sub": "user.unique_id",
    "name": "user.name",
    "given_name": "user.name",
    "family_name": "user.name",
    "preferred_username": "user.account.username",
    "email": "user.contact.email",
    "email_verified": "user.contact.email",
    "picture": "user.content.public",
    "locale": "user.demographic",
}


def normalize_profile(item: JSONObject, ctx: NormalizeContext) -> Record:
    """The signed-in account's own userinfo claims."""
    return own_account_record(item, ctx, _PROFILE_CLAIMS)


def own_account_record(
    claims: Mapping[str, Any], ctx: NormalizeContext, categories: Mapping[str, str]
) -> Record:
    """A linked account's own identity claims as one record; ``categories`` names
    the claims to keep (claims without a value are left out).

    It is the customer's own sign-in account, directly provided by its holder
    when they consented, so the visibility is ``direct`` and it has no subjects.
    """
    data = {
        claim: Field(value=claims[claim], category=category)
        for claim, category in categories.items()
        if claims.get(claim) is not None
    }
    return Record(
        id=str(claims.get("sub") or ctx.account_id),
        customer_id=ctx.customer_id,
        connection_id=ctx.connection_id,
        provider=ctx.provider,
        resource=ctx.resource,
        visibility=Visibility.DIRECT,
        subjects=(),
        data=data,
        occurred_at=None,
    )


PROFILE = Resource(
    name="profile",
    path="",  # the userinfo endpoint itself
    items_path=(),
    normalize=normalize_profile,
    description="the signed-in account's userinfo claims",
)


def provider_from_discovery(
    name: str, metadata: Mapping[str, Any], scopes: tuple[str, ...]
) -> Provider:
    """Build a provider from a discovery document already checked for issuer equality."""
    methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    client_auth = (
        ClientAuth.CLIENT_SECRET_BASIC
        if "client_secret_basic" in methods
        else ClientAuth.CLIENT_SECRET_POST
    )
    algorithms = tuple(
        alg
        for alg in metadata.get("id_token_signing_alg_values_supported", ["RS256"])
        if alg != "none"
    )
    userinfo = metadata.get("userinfo_endpoint")
    return Provider(
        name=name,
        display_name=str(metadata.get("issuer", name)),
        oauth=OAuthSettings(
            endpoints=Endpoints(
                authorize_url=str(metadata["authorization_endpoint"]),
                token_url=str(metadata["token_endpoint"]),
                revoke_url=metadata.get("revocation_endpoint"),
                userinfo_url=userinfo,
                jwks_url=str(metadata["jwks_uri"]),
                api_base_url=str(userinfo or metadata["issuer"]),
                issuer=str(metadata["issuer"]),
            ),
            scopes=scopes or DEFAULT_SCOPES,
            client_auth=client_auth,
            oidc=True,
            supports_iss_parameter=bool(
                metadata.get("authorization_response_iss_parameter_supported", False)
            ),
            id_token_algorithms=algorithms or ("RS256",),
        ),
        resources={"profile": PROFILE} if userinfo else {},
        account_from_claims=oidc_account,
        scope_descriptions={
            "openid": "know who you are when you sign in",
            "email": "see your email address",
            "profile": "see your name and profile picture",
        },
    )


def discovery_url(issuer: str) -> str:
    """OIDC Discovery §4: the issuer plus the well-known path."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


__all__ = ["PROFILE", "discovery_url", "own_account_record", "provider_from_discovery"]
