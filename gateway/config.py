"""Linkgate's settings: read once, validated once, frozen.

Sources, later ones win: built-in defaults, the TOML file (``LINKGATE_CONFIG``
or ``./linkgate.toml`` when present), then ``LINKGATE_*`` environment
variables. Nothing else in Linkgate reads ``os.environ``.

Every problem found is reported on its own line (``linkgate config check``), so
an operator fixes them all in one round.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gateway.errors import ConfigError

if TYPE_CHECKING:
    from providers.base import Provider

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./linkgate.db"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_CONNECT_SESSION_TTL = 15 * 60  # seconds a connect link stays usable
DEFAULT_STATE_TTL = 10 * 60  # seconds an OAuth round trip may take
DEFAULT_REFRESH_MARGIN = 300  # refresh tokens expiring within this many seconds
DEFAULT_DB_POOL_SIZE = 10
# Seconds one database step may take (a statement, a lock wait, a pool checkout,
# a connect) before the request fails with a 503 instead of hanging.
DEFAULT_DB_TIMEOUT = 10.0
DEFAULT_UPSTREAM_TIMEOUT = 10.0
DEFAULT_MAX_REQUEST_BODY = 1024 * 1024  # bytes; API bodies are small JSON documents
DEFAULT_MAX_REQUEST_HEADERS = 16 * 1024  # bytes, all header lines together
DEFAULT_RATE_LIMIT = 0.0  # requests/s per key and replica; 0 is off (set it in production)
DEFAULT_RATE_LIMIT_BURST = 100
# Seconds from a key's first 429 to the one audit event that counts its 429s.
DEFAULT_RATE_LIMIT_AUDIT_WINDOW = 60.0
DEFAULT_UPSTREAM_MAX_CONNECTIONS = 100
DEFAULT_UPSTREAM_MAX_BODY = 10 * 1024 * 1024
DEFAULT_WEBHOOK_MAX_ATTEMPTS = 12  # then the delivery is abandoned
DEFAULT_WEBHOOK_BACKOFF = 30.0  # seconds before the second attempt; doubles per failure
DEFAULT_AUDIT_CHECKPOINT_INTERVAL = 300.0  # seconds between signed audit checkpoints
DEFAULT_AUDIT_RETENTION_DAYS = 400
# The audit outbox (gateway.audit.outbox): seconds between drains of what an
# append left behind, and the age an entry must reach before a periodic drain
# takes it from the writer that holds it (the drain at startup takes all).
DEFAULT_AUDIT_OUTBOX_DRAIN_INTERVAL = 30.0
DEFAULT_AUDIT_OUTBOX_DRAIN_GRACE = 30.0
# The share of traces exported over OTLP (besides denials, errors and traces
# the caller samples); every request is recorded for its audit event anyway.
DEFAULT_TRACE_EXPORT_RATIO = 1.0
# Seconds between metric exports over OTLP (only with an endpoint).
DEFAULT_METRICS_EXPORT_INTERVAL = 30.0
# The notice's California section accounts for disclosures "in the preceding 12
# months": the log itself is never kept for less than a year.
MIN_AUDIT_RETENTION_DAYS = 365

ENDPOINT_KEYS = (
    "authorize_url",
    "token_url",
    "revoke_url",
    "userinfo_url",
    "jwks_url",
    "api_base_url",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderSettings:
    """One ``[providers.NAME]`` section: credentials and optional overrides."""

    name: str
    client_id: str
    client_secret: str = field(repr=False)
    kind: str = ""  # "" for a built-in provider, "oidc" for generic discovery
    issuer: str = ""
    scopes: tuple[str, ...] = ()
    endpoints: Mapping[str, str] = field(default_factory=dict)
    # A provider whose client secret is a JWT we sign (Apple): the team that signs it,
    # the key id in its header, and the PEM file holding the private key.
    team_id: str = ""
    key_id: str = ""
    private_key_file: str = ""
    # A provider pinned to an API version (LinkedIn's YYYYMM, the Graph API's vNN.N): the
    # one to use instead of the built-in default (Provider.api_version); empty keeps it.
    api_version: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    public_url: str = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
    vault_keys: str = field(default="", repr=False)  # "kid:base64key,…", first is current
    secret_key: str = field(default="", repr=False)  # HMAC master for cursors, subject hashes
    audit_key_file: str = ""  # Ed25519 key that signs audit checkpoints
    audit_checkpoint_interval: float = DEFAULT_AUDIT_CHECKPOINT_INTERVAL
    audit_retention_days: int = DEFAULT_AUDIT_RETENTION_DAYS
    audit_verifier_keys: tuple[str, ...] = ()  # "name+hash+base64key" per signed-note
    audit_outbox_drain_interval: float = DEFAULT_AUDIT_OUTBOX_DRAIN_INTERVAL
    audit_outbox_drain_grace: float = DEFAULT_AUDIT_OUTBOX_DRAIN_GRACE
    return_url_allowlist: tuple[str, ...] = ()
    connect_session_ttl: int = DEFAULT_CONNECT_SESSION_TTL
    state_ttl: int = DEFAULT_STATE_TTL
    refresh_margin: int = DEFAULT_REFRESH_MARGIN
    db_pool_size: int = DEFAULT_DB_POOL_SIZE
    db_timeout: float = DEFAULT_DB_TIMEOUT
    max_request_body: int = DEFAULT_MAX_REQUEST_BODY
    max_request_headers: int = DEFAULT_MAX_REQUEST_HEADERS
    rate_limit: float = DEFAULT_RATE_LIMIT
    rate_limit_burst: int = DEFAULT_RATE_LIMIT_BURST
    rate_limit_audit_window: float = DEFAULT_RATE_LIMIT_AUDIT_WINDOW
    upstream_timeout: float = DEFAULT_UPSTREAM_TIMEOUT
    upstream_max_connections: int = DEFAULT_UPSTREAM_MAX_CONNECTIONS
    upstream_max_body: int = DEFAULT_UPSTREAM_MAX_BODY
    log_level: str = "info"
    log_json: bool = True
    otlp_endpoint: str = ""
    trace_export_ratio: float = DEFAULT_TRACE_EXPORT_RATIO
    metrics_export_interval: float = DEFAULT_METRICS_EXPORT_INTERVAL
    webhook_url: str = ""  # connection health events are posted here; none when empty
    webhook_secret: str = field(default="", repr=False)  # HMAC key that signs them
    webhook_max_attempts: int = DEFAULT_WEBHOOK_MAX_ATTEMPTS
    webhook_backoff: float = DEFAULT_WEBHOOK_BACKOFF
    providers: Mapping[str, ProviderSettings] = field(default_factory=dict)

    @property
    def redirect_uri(self) -> str:
        return self.public_url.rstrip("/") + "/oauth/callback"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


# Environment variable -> (settings field, parser)
_ENV: dict[str, tuple[str, str]] = {
    "LINKGATE_DATABASE_URL": ("database_url", "str"),
    "LINKGATE_HOST": ("host", "str"),
    "LINKGATE_PORT": ("port", "int"),
    "LINKGATE_PUBLIC_URL": ("public_url", "str"),
    "LINKGATE_VAULT_KEYS": ("vault_keys", "str"),
    "LINKGATE_SECRET_KEY": ("secret_key", "str"),
    "LINKGATE_AUDIT_KEY_FILE": ("audit_key_file", "str"),
    "LINKGATE_AUDIT_CHECKPOINT_INTERVAL": ("audit_checkpoint_interval", "float"),
    "LINKGATE_AUDIT_RETENTION_DAYS": ("audit_retention_days", "int"),
    "LINKGATE_AUDIT_VERIFIER_KEYS": ("audit_verifier_keys", "list"),
    "LINKGATE_AUDIT_OUTBOX_DRAIN_INTERVAL": ("audit_outbox_drain_interval", "float"),
    "LINKGATE_AUDIT_OUTBOX_DRAIN_GRACE": ("audit_outbox_drain_grace", "float"),
    "LINKGATE_RETURN_URL_ALLOWLIST": ("return_url_allowlist", "list"),
    "LINKGATE_CONNECT_SESSION_TTL": ("connect_session_ttl", "int"),
    "LINKGATE_STATE_TTL": ("state_ttl", "int"),
    "LINKGATE_REFRESH_MARGIN": ("refresh_margin", "int"),
    "LINKGATE_DB_POOL_SIZE": ("db_pool_size", "int"),
    "LINKGATE_DB_TIMEOUT": ("db_timeout", "float"),
    "LINKGATE_MAX_REQUEST_BODY": ("max_request_body", "int"),
    "LINKGATE_MAX_REQUEST_HEADERS": ("max_request_headers", "int"),
    "LINKGATE_RATE_LIMIT": ("rate_limit", "float"),
    "LINKGATE_RATE_LIMIT_BURST": ("rate_limit_burst", "int"),
    "LINKGATE_RATE_LIMIT_AUDIT_WINDOW": ("rate_limit_audit_window", "float"),
    "LINKGATE_UPSTREAM_TIMEOUT": ("upstream_timeout", "float"),
    "LINKGATE_UPSTREAM_MAX_CONNECTIONS": ("upstream_max_connections", "int"),
    "LINKGATE_UPSTREAM_MAX_BODY": ("upstream_max_body", "int"),
    "LINKGATE_LOG_LEVEL": ("log_level", "str"),
    "LINKGATE_LOG_JSON": ("log_json", "bool"),
    "LINKGATE_OTLP_ENDPOINT": ("otlp_endpoint", "str"),
    "LINKGATE_TRACE_EXPORT_RATIO": ("trace_export_ratio", "float"),
    "LINKGATE_METRICS_EXPORT_INTERVAL": ("metrics_export_interval", "float"),
    "LINKGATE_WEBHOOK_URL": ("webhook_url", "str"),
    "LINKGATE_WEBHOOK_SECRET": ("webhook_secret", "str"),
    "LINKGATE_WEBHOOK_MAX_ATTEMPTS": ("webhook_max_attempts", "int"),
    "LINKGATE_WEBHOOK_BACKOFF": ("webhook_backoff", "float"),
}
_FIELD_KINDS = {name: kind for name, kind in _ENV.values()}


def load_settings(
    environ: Mapping[str, str] | None = None, *, config_path: Path | None = None
) -> Settings:
    """Read the TOML file and the environment; raise ``ConfigError`` listing every problem.

    ``config_path`` names the TOML file instead of ``LINKGATE_CONFIG`` (the demo uses it).
    """
    env = os.environ if environ is None else environ
    problems: list[str] = []
    raw = _read_toml(env, problems, config_path)
    values: dict[str, Any] = {}
    for key in raw:
        if key != "providers" and key not in _FIELD_KINDS:
            problems.append(f"{key}: unknown setting in the config file")
    for name, kind in _FIELD_KINDS.items():
        if name in raw:
            values[name] = _parse(kind, raw[name], name, problems)
    for var, (name, kind) in _ENV.items():
        if var in env:
            values[name] = _parse(kind, env[var], var, problems)
    values["providers"] = _providers(raw.get("providers", {}), env, problems)
    settings = Settings(**{k: v for k, v in values.items() if v is not None})
    problems.extend(validate(settings))
    if problems:
        raise ConfigError(problems)
    return settings


def validate(settings: Settings) -> list[str]:
    """Checks that need the whole picture; each returns one line an operator can act on."""
    from gateway.vault import KeyRing  # the vault owns its key format

    problems: list[str] = []
    if not settings.database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        problems.append(
            "LINKGATE_DATABASE_URL: use sqlite+aiosqlite:///PATH or postgresql+asyncpg://…"
        )
    if not _is_http_url(settings.public_url):
        problems.append("LINKGATE_PUBLIC_URL: must be an absolute http(s) URL")
    if not settings.vault_keys:
        problems.append(
            "LINKGATE_VAULT_KEYS: missing; run `linkgate keys generate` and set the entry it prints"
        )
    else:
        try:
            KeyRing.parse(settings.vault_keys)
        except ValueError as exc:
            problems.append(f"LINKGATE_VAULT_KEYS: {exc}")
    if len(settings.secret_key) < 32:
        problems.append(
            "LINKGATE_SECRET_KEY: missing or shorter than 32 characters; "
            "`linkgate keys generate --secret` prints one"
        )
    for url in settings.return_url_allowlist:
        if not _is_http_url(url):
            problems.append(f"LINKGATE_RETURN_URL_ALLOWLIST: {url!r} is not an http(s) URL")
    for label, number in (
        ("LINKGATE_CONNECT_SESSION_TTL", settings.connect_session_ttl),
        ("LINKGATE_STATE_TTL", settings.state_ttl),
        ("LINKGATE_DB_POOL_SIZE", settings.db_pool_size),
        ("LINKGATE_UPSTREAM_MAX_CONNECTIONS", settings.upstream_max_connections),
        ("LINKGATE_DB_TIMEOUT", settings.db_timeout),
        ("LINKGATE_MAX_REQUEST_BODY", settings.max_request_body),
        ("LINKGATE_MAX_REQUEST_HEADERS", settings.max_request_headers),
        ("LINKGATE_RATE_LIMIT_BURST", settings.rate_limit_burst),
        ("LINKGATE_RATE_LIMIT_AUDIT_WINDOW", settings.rate_limit_audit_window),
    ):
        if number <= 0:
            problems.append(f"{label}: must be positive")
    problems.extend(_audit_problems(settings))
    problems.extend(_webhook_problems(settings))
    if settings.refresh_margin < 0:
        problems.append("LINKGATE_REFRESH_MARGIN: must not be negative")
    if settings.rate_limit < 0:
        problems.append("LINKGATE_RATE_LIMIT: must not be negative (0 turns it off)")
    if not 0.0 <= settings.trace_export_ratio <= 1.0:  # NaN included
        problems.append(
            "LINKGATE_TRACE_EXPORT_RATIO: a share between 0 and 1 "
            "(0.1 exports one trace in ten, plus every denied or failed request)"
        )
    if not 0 < settings.metrics_export_interval < math.inf:  # NaN included
        problems.append(
            "LINKGATE_METRICS_EXPORT_INTERVAL: a positive number of seconds between metric exports"
        )
    if settings.log_level.lower() not in {"debug", "info", "warning", "error"}:
        problems.append("LINKGATE_LOG_LEVEL: one of debug, info, warning, error")
    problems.extend(_provider_problems(settings))
    return problems


def _audit_problems(settings: Settings) -> list[str]:
    from gateway.audit import CheckpointKeys  # the audit log owns its key format

    problems: list[str] = []
    if settings.audit_checkpoint_interval <= 0:
        problems.append("LINKGATE_AUDIT_CHECKPOINT_INTERVAL: must be positive")
    if not 0 < settings.audit_outbox_drain_interval < math.inf:  # NaN included
        problems.append("LINKGATE_AUDIT_OUTBOX_DRAIN_INTERVAL: a positive number of seconds")
    if not 0 <= settings.audit_outbox_drain_grace < math.inf:
        problems.append(
            "LINKGATE_AUDIT_OUTBOX_DRAIN_GRACE: must not be negative "
            "(0 lets a periodic drain take an entry its writer is still appending)"
        )
    if settings.audit_retention_days < MIN_AUDIT_RETENTION_DAYS:
        problems.append(
            f"LINKGATE_AUDIT_RETENTION_DAYS: at least {MIN_AUDIT_RETENTION_DAYS} "
            "(disclosures are accounted for over the preceding 12 months)"
        )
    try:
        CheckpointKeys.parse(settings.audit_verifier_keys)
    except ValueError as exc:
        problems.append(f"LINKGATE_AUDIT_VERIFIER_KEYS: {exc}")
    return problems


def _webhook_problems(settings: Settings) -> list[str]:
    problems: list[str] = []
    if settings.webhook_url:
        parts = urlsplit(settings.webhook_url)
        if not _is_http_url(settings.webhook_url):
            problems.append("LINKGATE_WEBHOOK_URL: must be an absolute http(s) URL")
        elif parts.scheme != "https" and parts.hostname not in {"localhost", "127.0.0.1", "::1"}:
            # The body names customers and connections: plain http only on this machine.
            problems.append("LINKGATE_WEBHOOK_URL: must be https (http only for localhost)")
        if len(settings.webhook_secret) < 32:
            problems.append(
                "LINKGATE_WEBHOOK_SECRET: missing or shorter than 32 characters; "
                "`linkgate keys generate --secret` prints one"
            )
    if settings.webhook_max_attempts <= 0:
        problems.append("LINKGATE_WEBHOOK_MAX_ATTEMPTS: must be positive")
    if settings.webhook_backoff <= 0:
        problems.append("LINKGATE_WEBHOOK_BACKOFF: must be positive")
    return problems


def _provider_problems(settings: Settings) -> list[str]:
    from providers import BUILTIN_PROVIDERS

    problems: list[str] = []
    for name, provider in settings.providers.items():
        where = f"[providers.{name}]"
        if provider.kind == "oidc":
            if not _is_http_url(provider.issuer):
                problems.append(
                    f'{where}: issuer must be an absolute http(s) URL for kind = "oidc"'
                )
        elif provider.kind:
            problems.append(f'{where}: kind must be "oidc" or absent, not {provider.kind!r}')
        elif name not in BUILTIN_PROVIDERS:
            known = ", ".join(sorted(BUILTIN_PROVIDERS))
            problems.append(
                f'{where}: unknown provider; built-ins are {known}, or set kind = "oidc"'
            )
        if not provider.client_id:
            problems.append(f"{where}: client_id is missing")
        for key, url in provider.endpoints.items():
            if not _is_http_url(url):
                problems.append(f"{where}: {key} must be an absolute http(s) URL")
        builtin = BUILTIN_PROVIDERS.get(name) if not provider.kind else None
        signs = builtin is not None and builtin.oauth.client_secret_jwt is not None
        problems.extend(_signing_problems(where, provider, required=signs))
        if provider.api_version:
            problems.extend(_api_version_problems(where, builtin, provider.api_version))
    return problems


def _api_version_problems(where: str, builtin: Provider | None, version: str) -> list[str]:
    """A version only for a provider pinned to one, and only in that provider's form."""
    from providers import BUILTIN_PROVIDERS

    if builtin is None or builtin.api_version is None:
        pinned = ", ".join(n for n, p in sorted(BUILTIN_PROVIDERS.items()) if p.api_version)
        return [f"{where}: api_version is only for a provider pinned to an API version ({pinned})"]
    if not builtin.api_version.accepts(version):
        return [f"{where}: api_version must be {builtin.api_version.form}, not {version!r}"]
    return []


_SIGNING_KEYS = ("team_id", "key_id", "private_key_file")


def _signing_problems(where: str, provider: ProviderSettings, *, required: bool) -> list[str]:
    """A provider that signs its client secret needs all three keys and a usable EC key."""
    present = [key for key in _SIGNING_KEYS if getattr(provider, key)]
    if not present and not required:
        return []
    missing = [key for key in _SIGNING_KEYS if not getattr(provider, key)]
    if missing:
        return [f"{where}: {', '.join(missing)} missing (the client secret is a signed JWT)"]
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(Path(provider.private_key_file).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        return [f"{where}: private_key_file cannot be read as a PEM key ({type(exc).__name__})"]
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        return [f"{where}: private_key_file must be a P-256 EC key (ES256)"]
    return []


def _read_toml(
    env: Mapping[str, str], problems: list[str], config_path: Path | None
) -> dict[str, Any]:
    explicit = str(config_path) if config_path else env.get("LINKGATE_CONFIG")
    path = Path(explicit) if explicit else Path("linkgate.toml")
    if not path.exists():
        if explicit:
            problems.append(f"LINKGATE_CONFIG: {path} does not exist")
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path}: not valid TOML ({exc})")
        return {}


def _providers(
    raw: Any, env: Mapping[str, str], problems: list[str]
) -> dict[str, ProviderSettings]:
    if not isinstance(raw, dict):
        problems.append("providers: must be a table of [providers.NAME] sections")
        return {}
    result: dict[str, ProviderSettings] = {}
    for name, section in raw.items():
        if not isinstance(section, dict):
            problems.append(f"[providers.{name}]: must be a table")
            continue
        prefix = f"LINKGATE_PROVIDER_{name.upper().replace('-', '_')}_"
        allowed = {"client_id", "client_secret", "kind", "issuer", "scopes", *ENDPOINT_KEYS}
        allowed |= {*_SIGNING_KEYS, "api_version"}
        for key in section:
            if key not in allowed:
                problems.append(f"[providers.{name}]: unknown key {key!r}")
        scopes = section.get("scopes", [])
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            problems.append(f"[providers.{name}]: scopes must be a list of strings")
            scopes = []
        result[name] = ProviderSettings(
            name=name,
            client_id=env.get(prefix + "CLIENT_ID", str(section.get("client_id", ""))),
            client_secret=env.get(prefix + "CLIENT_SECRET", str(section.get("client_secret", ""))),
            kind=str(section.get("kind", "")),
            issuer=str(section.get("issuer", "")).rstrip("/"),
            scopes=tuple(scopes),
            **{key: str(section.get(key, "")) for key in _SIGNING_KEYS},
            api_version=env.get(prefix + "API_VERSION", str(section.get("api_version", ""))),
            endpoints={
                k: str(section[k]).rstrip("/") if k == "issuer" else str(section[k])
                for k in (*ENDPOINT_KEYS, "issuer")
                if section.get(k)
            },
        )
    return result


def _parse(kind: str, value: Any, where: str, problems: list[str]) -> Any:
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if kind == "list":
            items = value if isinstance(value, list) else str(value).split(",")
            return tuple(str(item).strip() for item in items if str(item).strip())
        return str(value)
    except (TypeError, ValueError):
        problems.append(f"{where}: expected {kind}, got {value!r}")
        return None


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in {"http", "https"} and bool(parts.netloc)
