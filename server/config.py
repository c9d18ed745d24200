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

Transport = Literal["stdio", "sse", "streamable-http"]

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def parse_flag(value: object) -> bool:
    """A boolean setting, read one way everywhere: `1/true/yes/on` or `0/false/no/off`, any case.

    Raises:
        ValueError: anything else (`t`, `y`, `2`, …): a setting the operator mistyped stops the start.
    """
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("must be 1, true, yes or on, or 0, false, no or off")


Flag = Annotated[bool, BeforeValidator(parse_flag)]

# (variable, field, help) for every setting, so --help and the README never drift from the code.
ENVIRONMENT: tuple[tuple[str, str, str], ...] = (
    ("NEUROFLASH_CLIENT_ID", "neuroflash_client_id", "neuroflash service-account client id"),
    ("NEUROFLASH_CLIENT_SECRET", "neuroflash_client_secret", "neuroflash service-account client secret"),
    ("NEUROFLASH_TOKEN_URL", "neuroflash_token_url", "OAuth token endpoint"),
    ("NEUROFLASH_API_URL", "neuroflash_api_url", "neuroflash API base URL"),
    ("NEUROFLASH_WORKSPACE_ID", "neuroflash_workspace_id", "default workspace for tools called without one"),
    (
        "NEUROFLASH_CHAT_PATH",
        "neuroflash_chat_path",
        "chat-completions path relative to NEUROFLASH_API_URL (default: found by trying the documented ones)",
    ),
    ("NEURALSNAP_API_KEY", "neuralsnap_api_key", "NeuralSnap API key (ns_live_... or ns_test_...)"),
    ("NEURALSNAP_API_URL", "neuralsnap_api_url", "NeuralSnap API base URL, including /api/v1"),
    ("FLASHSNAP_TIMEOUT_S", "timeout_s", "timeout of one upstream HTTP request, in seconds"),
    ("FLASHSNAP_MAX_GENERATION_S", "max_generation_s", "longest a generate may stream, keep-alives or not"),
    ("FLASHSNAP_MAX_WAIT_S", "max_wait_s", "how long a call may wait for a rate limit before it fails"),
    (
        "FLASHSNAP_MAX_CONCURRENT_GENERATIONS",
        "max_concurrent_generations",
        "generations at once per workspace",
    ),
    ("FLASHSNAP_LOG_LEVEL", "log_level", "DEBUG, INFO, WARNING or ERROR (logs go to stderr)"),
    ("FLASHSNAP_TRANSPORT", "transport", "stdio, sse or streamable-http"),
    ("FLASHSNAP_HOST", "host", "address the HTTP transports bind to"),
    ("FLASHSNAP_PORT", "port", "port the HTTP transports bind to"),
    ("FLASHSNAP_HTTP_TOKEN", "http_token", "bearer token every HTTP request must carry (required off loopback)"),
    ("FLASHSNAP_ALLOWED_ORIGINS", "allowed_origins", "extra browser origins allowed over HTTP, comma-separated"),
    ("FLASHSNAP_ALLOWED_HOSTS", "allowed_hosts", "extra Host header names allowed over HTTP, comma-separated"),
    ("FLASHSNAP_MAX_BODY_BYTES", "max_body_bytes", "largest HTTP request body accepted"),
    ("FLASHSNAP_SESSION_IDLE_S", "session_idle_s", "an HTTP session idle this long is closed"),
    ("FLASHSNAP_MAX_SESSIONS", "max_sessions", "HTTP sessions at once; a new one closes the longest-idle"),
    (
        "FLASHSNAP_HTTP_READ_TIMEOUT_S",
        "http_read_timeout_s",
        "seconds a client has to send a request's headers, and its body",
    ),
    ("FLASHSNAP_MAX_CONNECTIONS", "max_connections", "HTTP connections at once; more are answered 503"),
    ("FLASHSNAP_SHUTDOWN_GRACE_S", "shutdown_grace_s", "how long in-flight HTTP calls may finish on shutdown"),
    ("FLASHSNAP_STATE", "state", "where shared state lives: sqlite (default), redis or memory (this process only)"),
    ("FLASHSNAP_STATE_DIR", "state_dir", "directory of the SQLite state (default: the user cache directory)"),
    ("FLASHSNAP_REDIS_URL", "redis_url", "redis:// or rediss:// URL of a Redis or Valkey server shared by replicas"),
    ("FLASHSNAP_REDIS_PREFIX", "redis_prefix", "prefix of every Redis key (default flashsnap:)"),
    ("FLASHSNAP_HTTP_STATELESS", "http_stateless", "1: any replica serves any request (default on with Redis)"),
    ("FLASHSNAP_WORKERS", "workers", "HTTP worker processes on this host, sharing the state store"),
    (
        "FLASHSNAP_TOOLSETS",
        "toolsets",
        "toolsets to offer, comma-separated: neuroflash, brand, twins, neuralsnap, neuralsnap-write, default, all",
    ),
    ("FLASHSNAP_TOOLS", "tools", "only these tools, comma-separated (with FLASHSNAP_TOOLSETS: these as well)"),
    ("FLASHSNAP_EXCLUDE_TOOLS", "exclude_tools", "tools to turn off, comma-separated"),
    ("FLASHSNAP_READ_ONLY", "read_only", "1: only tools annotated read-only (nothing that creates, changes or spends)"),
    (
        "FLASHSNAP_MAX_RESULT_TOKENS",
        "max_result_tokens",
        "largest list or search result, in tokens of 4 bytes; more is cut, saying how to get the rest",
    ),
    (
        "FLASHSNAP_CONFIRM_WORDS",
        "confirm_words",
        "a generate or crystallize that could spend more words than this asks the user first (0: never)",
    ),
    (
        "FLASHSNAP_CONFIRM_DELETE",
        "confirm_delete",
        "1: delete_snapshot asks the user first (default); 0: it deletes unasked, for hosts that answer for the user",
    ),
    (
        "FLASHSNAP_DEFAULT_MAX_TOKENS",
        "default_max_tokens",
        "the max_tokens a generate sends when none is given, lowered to stay within FLASHSNAP_CONFIRM_WORDS",
    ),
    (
        "FLASHSNAP_REQUEST_STATE_KEY",
        "request_state_key",
        "secret (32+ chars) sealing questions between rounds; replicas share it (default: from the credentials)",
    ),
    ("FLASHSNAP_METRICS_PORT", "metrics_port", "serve Prometheus metrics on 127.0.0.1:PORT/metrics (stdio too)"),
)


class Settings(BaseModel):
    """Everything the server reads from its environment; secrets mask their own repr."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    neuroflash_client_id: str | None = None
    neuroflash_client_secret: SecretStr | None = None
    neuroflash_token_url: str = "https://id.neuroflash.com/oauth/v2/token"
    neuroflash_api_url: str = "https://app.neuroflash.com"
    neuroflash_workspace_id: str | None = None
    neuroflash_chat_path: str | None = None  # None: the reference page's path, else the overview page's, learned
    neuralsnap_api_key: SecretStr | None = None
    neuralsnap_api_url: str = "https://neuralsnap.ai/api/v1"
    timeout_s: float = Field(default=60.0, gt=0)
    max_generation_s: float = Field(default=600.0, gt=0)
    max_wait_s: float = Field(default=30.0, ge=0)
    max_concurrent_generations: int = Field(default=4, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    transport: Transport = "stdio"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    http_token: SecretStr | None = None
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    session_idle_s: float = Field(default=300.0, gt=0, le=86_400)
    max_sessions: int = Field(default=1000, ge=1, le=100_000)
    http_read_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    max_connections: int = Field(default=1000, ge=1)
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    state: Literal["sqlite", "redis", "memory"] | None = None
    state_dir: Path | None = None
    redis_url: SecretStr | None = None  # it may carry a password
    redis_prefix: str = Field(default="flashsnap:", min_length=1, max_length=100)
    http_stateless: Flag | None = None
    workers: int = Field(default=1, ge=1, le=64)
    toolsets: tuple[str, ...] | None = None  # None: the default toolsets (unless `tools` names tools)
    tools: tuple[str, ...] | None = None  # None: the toolsets' tools; server/toolselect.py checks the names
    exclude_tools: tuple[str, ...] = ()
    read_only: Flag = False
    max_result_tokens: int = Field(default=20_000, ge=500, le=1_000_000)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # Half the monthly words of neuroflash's Free plan (2,000): no one call takes that much of a month unasked.
    confirm_words: int = Field(default=1000, ge=0, le=10_000_000)
    confirm_delete: Flag = True
    # Anthropic's own examples' 1,024: ~768 words, a long email or a blog section, with ~230 words of prompt to
    # spare under the default 1,000-word question (README, "Asking the user first").
    default_max_tokens: int = Field(default=1024, ge=1, le=64_000)
    request_state_key: SecretStr | None = None
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

    @field_validator("request_state_key")
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
                                                 self.http_token, self.redis_url, self.request_state_key)
                 if s is not None]  # fmt: skip
        if self.redis_url is not None and (password := urlsplit(self.redis_url.get_secret_value()).password):
            found.append(password)
        return found

    @property
    def neuroflash_configured(self) -> bool:
        return bool(self.neuroflash_client_id and self.neuroflash_client_secret)
