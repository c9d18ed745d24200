"""Settings: one frozen object, built once from an injectable environment mapping."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from server.errors import ConfigurationError
from server.segments import ID_PATTERN, MAX_ID

Transport = Literal["stdio", "sse", "streamable-http"]

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def flag_word(value: object) -> bool | None:
    """The one reading of a yes/no word, for settings and headers alike: `1/true/yes/on` is True,
    `0/false/no/off` False (any case, spaces around ignored), anything else None: the caller decides what an
    unreadable word costs (a setting stops the start, a narrowing header narrows)."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


def parse_flag(value: object) -> bool:
    """A boolean setting, read one way everywhere: `1/true/yes/on` or `0/false/no/off`, any case.

    Raises:
        ValueError: anything else (`t`, `y`, `2`, a list such as `true, true`, …): a setting the operator mistyped
            stops the start.
    """
    read = flag_word(value)
    if read is None:
        raise ValueError("must be 1, true, yes or on, or 0, false, no or off")
    return read


Flag = Annotated[bool, BeforeValidator(parse_flag)]


# Each field's description is its help line; its variable is `variable(field)` below (one place for both).
class Settings(BaseModel):
    """Everything the server reads from its environment; secrets mask their own repr."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    neuroflash_client_id: str | None = Field(default=None, description="neuroflash service-account client id")
    neuroflash_client_secret: SecretStr | None = Field(
        default=None, description="neuroflash service-account client secret"
    )
    neuroflash_token_url: str = Field(
        default="https://id.neuroflash.com/oauth/v2/token", description="OAuth token endpoint"
    )
    neuroflash_api_url: str = Field(default="https://app.neuroflash.com", description="neuroflash API base URL")
    neuroflash_workspace_id: str | None = Field(
        default=None,
        description="default workspace for tools called without one",
        max_length=MAX_ID,
        pattern=ID_PATTERN,  # it goes into URL paths: the tools' rule (server/segments.py)
    )
    # None: the reference page's path, else the overview page's, learned
    neuroflash_chat_path: str | None = Field(
        default=None,
        description=(
            "chat-completions path relative to NEUROFLASH_API_URL (default: found by trying the documented ones)"
        ),
    )
    neuralsnap_api_key: SecretStr | None = Field(
        default=None, description="NeuralSnap API key (ns_live_... or ns_test_...)"
    )
    neuralsnap_api_url: str = Field(
        default="https://neuralsnap.ai/api/v1", description="NeuralSnap API base URL, including /api/v1"
    )
    timeout_s: float = Field(default=60.0, gt=0, description="timeout of one upstream HTTP request, in seconds")
    max_generation_s: float = Field(
        default=600.0, gt=0, description="longest a generate may stream, keep-alives or not"
    )
    max_wait_s: float = Field(
        default=30.0, ge=0, description="how long a call may wait for a rate limit before it fails"
    )
    max_concurrent_generations: int = Field(default=4, ge=1, description="generations at once per workspace")
    share_below: float = Field(
        default=0.2, ge=0, lt=1,
        description="once a workspace's daily or monthly words fall below this fraction of the limit, what is left "
        "is shared among the principals who spent in that period, by weight (0: never)",
    )  # fmt: skip
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="DEBUG, INFO, WARNING or ERROR (logs go to stderr)"
    )
    transport: Transport = Field(default="stdio", description="stdio, sse or streamable-http")
    host: str = Field(default="127.0.0.1", description="address the HTTP transports bind to")
    port: int = Field(default=8000, ge=0, le=65535, description="port the HTTP transports bind to")
    http_token: SecretStr | None = Field(
        default=None, description="bearer token every HTTP request must carry (required off loopback)"
    )
    # None: `token` when FLASHSNAP_HTTP_TOKEN is set, else `none` (server/auth/modes.py checks the combination)
    auth: Literal["none", "token", "tokens", "oauth"] | None = Field(
        default=None,
        description="who may call over HTTP: none, token (FLASHSNAP_HTTP_TOKEN), tokens (the team file) or oauth",
    )
    team_file: Path | None = Field(
        default=None, description="TOML file naming the team: principals, their token hashes, scopes and limits"
    )
    oauth_issuer: str | None = Field(
        default=None, description="oauth mode: the authorization server's issuer URL (https://...)"
    )
    public_url: str | None = Field(
        default=None, description="oauth mode: this server's public URL, as clients reach it (https://.../mcp)"
    )
    allowed_origins: tuple[str, ...] = Field(
        default=(), description="extra browser origins allowed over HTTP, comma-separated"
    )
    allowed_hosts: tuple[str, ...] = Field(
        default=(), description="extra Host header names allowed over HTTP, comma-separated"
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="largest HTTP request body accepted")
    session_idle_s: float = Field(
        default=300.0, gt=0, le=86_400, description="an HTTP session idle this long is closed"
    )
    max_sessions: int = Field(
        default=1000, ge=1, le=100_000, description="HTTP sessions at once; a new one closes the longest-idle"
    )
    max_sessions_per_principal: int = Field(
        default=100, ge=1, le=100_000, description="HTTP sessions at once of one principal; a new one closes its own"
    )
    http_read_timeout_s: float = Field(
        default=10.0, gt=0, le=3600, description="seconds a client has to send a request's headers, and its body"
    )
    max_connections: int = Field(default=1000, ge=1, description="HTTP connections at once; more are answered 503")
    shutdown_grace_s: float = Field(
        default=10.0, ge=0, description="how long in-flight HTTP calls may finish on shutdown"
    )
    state: Literal["sqlite", "redis", "memory"] | None = Field(
        default=None, description="where shared state lives: sqlite (default), redis or memory (this process only)"
    )
    state_dir: Path | None = Field(
        default=None, description="directory of the SQLite state (default: the user cache directory)"
    )
    # it may carry a password
    redis_url: SecretStr | None = Field(
        default=None, description="redis:// or rediss:// URL of a Redis or Valkey server shared by replicas"
    )
    redis_prefix: str = Field(
        default="flashsnap:", min_length=1, max_length=100, description="prefix of every Redis key (default flashsnap:)"
    )
    http_stateless: Flag | None = Field(
        default=None, description="1: any replica serves any request (default on with Redis)"
    )
    workers: int = Field(
        default=1, ge=1, le=64, description="HTTP worker processes on this host, sharing the state store"
    )
    # None: the default toolsets (unless `tools` names tools)
    toolsets: tuple[str, ...] | None = Field(
        default=None,
        description=(
            "toolsets to offer, comma-separated: neuroflash, brand, twins, neuralsnap, neuralsnap-write, default, all"
        ),
    )
    # None: the toolsets' tools; server/tooling/selection.py checks the names
    tools: tuple[str, ...] | None = Field(
        default=None, description="only these tools, comma-separated (with FLASHSNAP_TOOLSETS: these as well)"
    )
    exclude_tools: tuple[str, ...] = Field(default=(), description="tools to turn off, comma-separated")
    read_only: Flag = Field(
        default=False, description="1: only tools annotated read-only (nothing that creates, changes or spends)"
    )
    max_result_tokens: int = Field(
        default=20_000,
        ge=500,
        le=1_000_000,
        description="largest list or search result, in tokens of 4 bytes; more is cut, saying how to get the rest",
    )
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="serve Prometheus metrics on 127.0.0.1:PORT/metrics (stdio too)"
    )
    # Half the monthly words of neuroflash's Free plan (2,000): no one call takes that much of a month unasked.
    confirm_words: int = Field(
        default=1000,
        ge=0,
        le=10_000_000,
        description="a generate or crystallize that could spend more words than this asks the user first (0: never)",
    )
    confirm_delete: Flag = Field(
        default=True,
        description=(
            "1: delete_snapshot asks the user first (default);"
            " 0: it deletes unasked, for hosts that answer for the user"
        ),
    )
    # Anthropic's own examples' 1,024: ~768 words, a long email or a blog section, with ~230 words of prompt to
    # spare under the default 1,000-word question (README, "Asking the user first").
    default_max_tokens: int = Field(
        default=1024,
        ge=1,
        le=64_000,
        description=(
            "the max_tokens a generate sends when none is given, lowered to stay within FLASHSNAP_CONFIRM_WORDS"
        ),
    )
    request_state_key: SecretStr | None = Field(
        default=None,
        description=(
            "secret (32+ chars) sealing questions between rounds; replicas share it (default: from the credentials)"
        ),
    )
    # None: the public URL, the RFC 8707 resource a client names when it asks the authorization server for a token
    oauth_audience: str | None = Field(
        default=None, description="the `aud` an access token must carry (default: FLASHSNAP_PUBLIC_URL)"
    )
    oauth_groups_claim: str = Field(
        default="groups", min_length=1, max_length=200, description="the access token claim that lists its groups"
    )
    audit_log: Path | None = Field(
        default=None,
        description="write one JSON line per tool call, resource read and prompt to this file (see Audit log)",
    )
    audit_key: SecretStr | None = Field(
        default=None,
        description="secret (32+ chars) keying the audit log's hashes (default: one made in the state directory)",
    )
    audit_max_bytes: int | None = Field(
        default=None, ge=4096, description="start a new audit file when the current one would pass this size"
    )
    audit_rotate_daily: Flag = Field(
        default=False, description="1: start a new audit file at the first record of each day (UTC)"
    )
    sandbox: bool = False

    @field_validator("tools", "exclude_tools", "toolsets", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @field_validator("allowed_origins", "allowed_hosts", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip().rstrip("/") for item in value.split(",") if item.strip())
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None and not url.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")  # the value may hold a password
        return url

    @model_validator(mode="after")
    def _check_state(self) -> Settings:
        if self.state == "redis" and self.redis_url is None:
            raise ValueError("FLASHSNAP_STATE=redis needs FLASHSNAP_REDIS_URL")
        if self.state == "memory" and self.workers > 1 and self.transport != "stdio":
            # Each worker would keep its own token, budget and used answers: a yes replayed would count once per worker.
            raise ValueError(
                f"FLASHSNAP_STATE=memory cannot serve {self.workers} workers: each would keep its own token, rate "
                "budget and answered questions, so one yes could be spent once per worker; use the default state "
                "(unset FLASHSNAP_STATE: SQLite in the state directory), FLASHSNAP_STATE=redis, or FLASHSNAP_WORKERS=1"
            )
        return self

    @field_validator("http_token")
    @classmethod
    def _check_token_strength(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and len(token.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return token

    @field_validator("neuroflash_api_url", "neuralsnap_api_url", "neuroflash_token_url")
    @classmethod
    def _strip_trailing_slash(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return url.rstrip("/")

    @field_validator("oauth_issuer", "public_url")
    @classmethod
    def _check_public_urls(cls, url: str | None) -> str | None:
        # Both are compared character for character (RFC 8414 §3.3, RFC 9728 §3.3): kept as written. The audience
        # is not checked: it may be a plain identifier (Entra's client id, an api:// name).
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment or parts.query:
            raise ValueError("must be an http:// or https:// URL without a query or fragment")
        if parts.scheme == "http" and not _loopback_name(parts.hostname):
            raise ValueError("must be https:// (http:// is for a loopback address alone)")
        return url

    @field_validator("neuroflash_chat_path")
    @classmethod
    def _check_chat_path(cls, path: str | None) -> str | None:
        if path is None:
            return None
        path = "/" + path.strip().lstrip("/")
        if "://" in path or ".." in path or "?" in path or "#" in path or any(c.isspace() for c in path):
            raise ValueError("must be a path relative to NEUROFLASH_API_URL, e.g. /api/ds-prototypes/chat/completions")
        return path.rstrip("/") or None

    @field_validator("confirm_words", "default_max_tokens", mode="before")
    @classmethod
    def _whole_words(cls, value: object) -> object:
        # A desktop host may render its number setting as "1000.0"; a whole number is meant all the same.
        if isinstance(value, str) and value.endswith(".0") and value[:-2].isdigit():
            return value[:-2]
        return value

    @field_validator("request_state_key", "audit_key")
    @classmethod
    def _check_state_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters of secret randomness")
        return key

    @field_validator("neuralsnap_api_key")
    @classmethod
    def _check_key_format(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and not key.get_secret_value().startswith(("ns_live_", "ns_test_")):
            # The value itself is never echoed: it is a secret even when it is malformed.
            raise ValueError("must start with ns_live_ or ns_test_")
        return key

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from `environ` (default: the process environment); blank values count as unset.

        Raises:
            ConfigurationError: a variable is malformed or out of range; the message names each one and its rule.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {
            field: environ[var].strip() for var, field, _ in ENVIRONMENT if environ.get(var, "").strip()
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            field_to_var = {field: var for var, field, _ in ENVIRONMENT}
            problems = [
                f"{field_to_var.get(str(err['loc'][0]), str(err['loc'][0]))}: {err['msg']}"
                if err["loc"]
                else str(err["msg"]).removeprefix("Value error, ")
                for err in exc.errors()
            ]
            raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None

    @property
    def audience(self) -> str | None:
        """The `aud` an access token must carry: as set, else the public URL (RFC 8707)."""
        return self.oauth_audience or self.public_url

    @property
    def store(self) -> Literal["sqlite", "redis", "memory"]:
        """The state store in use: as asked, else Redis when a URL is given, else SQLite."""
        if self.state is not None:
            return self.state
        return "redis" if self.redis_url is not None else "sqlite"

    @property
    def stateless(self) -> bool:
        """Streamable HTTP without sessions: as asked, else on for clusters (Redis) and several workers."""
        if self.http_stateless is not None:
            return self.http_stateless
        return self.redis_url is not None or self.workers > 1

    @property
    def secrets(self) -> list[str]:
        """Every secret value, for the log mask: credentials, the HTTP token, a Redis password."""
        found = [s.get_secret_value() for s in (self.neuroflash_client_secret, self.neuralsnap_api_key,
                                                 self.http_token, self.redis_url, self.request_state_key,
                                                 self.audit_key)
                 if s is not None]  # fmt: skip
        if self.redis_url is not None and (password := urlsplit(self.redis_url.get_secret_value()).password):
            found.append(password)
        return found

    @property
    def neuroflash_configured(self) -> bool:
        return bool(self.neuroflash_client_id and self.neuroflash_client_secret)


def _loopback_name(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def variable(field: str) -> str:
    """A setting's environment variable: the upstream's own prefix for its account, `FLASHSNAP_` for the rest."""
    return field.upper() if field.startswith(("neuroflash_", "neuralsnap_")) else "FLASHSNAP_" + field.upper()


# (variable, field, help) for every setting, read from the fields themselves, so --help, the README and `check`
# never drift from the code. A field without a description (`sandbox`) is set by a command-line flag alone.
ENVIRONMENT: tuple[tuple[str, str, str], ...] = tuple(
    (variable(name), name, field.description) for name, field in Settings.model_fields.items() if field.description
)
