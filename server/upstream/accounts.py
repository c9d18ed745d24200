"""The team file's `[accounts.<name>]` tables: where each account's credentials are read from, and reading them.

A table names environment variables (`*_env`) or files (`*_file`), never a secret itself, so the team file can
be shown, diffed and committed. Each credential is read once, at start-up; a missing variable or file, an empty
one or a value of the wrong shape stops the start, naming the account and the variable or file (never its value).
The team file's principals route to these names (`server/auth/team.py`); the runtime opens each account's services.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, SecretStr, StringConstraints, ValidationError, model_validator

from server.config import Settings
from server.errors import ConfigurationError

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME)]
FilePath = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
# Each credential, and how the settings name it (what a missing one's message says to set).
CREDENTIALS = ("neuroflash_client_id", "neuroflash_client_secret", "neuralsnap_api_key")
KEYS = tuple(f"{credential}_{how}" for credential in CREDENTIALS for how in ("env", "file"))
MAX_SECRET_BYTES = 4096  # a credential file is one line; anything longer is the wrong file


class AccountEntry(BaseModel):
    """One `[accounts.<name>]` table: for each credential, a variable or a file holding it (not both)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    neuroflash_client_id_env: EnvName | None = None
    neuroflash_client_id_file: FilePath | None = None
    neuroflash_client_secret_env: EnvName | None = None
    neuroflash_client_secret_file: FilePath | None = None
    neuralsnap_api_key_env: EnvName | None = None
    neuralsnap_api_key_file: FilePath | None = None

    @model_validator(mode="after")
    def _whole(self) -> AccountEntry:
        for credential in CREDENTIALS:
            if self.source(credential) == ("both", ""):
                raise ValueError(f"give {credential}_env or {credential}_file, not both")
        has_id = self.source("neuroflash_client_id") is not None
        if has_id != (self.source("neuroflash_client_secret") is not None):
            raise ValueError("neuroflash needs both the client id and the client secret (or neither)")
        if not has_id and self.source("neuralsnap_api_key") is None:
            raise ValueError("names no credential: give neuroflash_client_id_env and neuroflash_client_secret_env, "
                             "or neuralsnap_api_key_env (or their *_file forms)")  # fmt: skip
        return self

    def source(self, credential: str) -> tuple[str, str] | None:
        """Where `credential` is read from: ("env", NAME) or ("file", PATH); None when the table has neither."""
        env, file = getattr(self, f"{credential}_env"), getattr(self, f"{credential}_file")
        if env is not None and file is not None:
            return ("both", "")
        if env is not None:
            return ("env", env)
        return ("file", file) if file is not None else None


@dataclass(frozen=True)
class Account:
    """One account as the runtime opens it: its name and its credentials, read (secrets held in `SecretStr`)."""

    name: str
    neuroflash_client_id: str | None = None
    neuroflash_client_secret: SecretStr | None = None
    neuralsnap_api_key: SecretStr | None = None

    def settings(self, base: Settings) -> Settings:
        """`base` with this account's credentials in place of the environment's: what its services open with."""
        return base.model_copy(
            update={
                "neuroflash_client_id": self.neuroflash_client_id,
                "neuroflash_client_secret": self.neuroflash_client_secret,
                "neuralsnap_api_key": self.neuralsnap_api_key,
            }
        )


def has_default(settings: Settings) -> bool:
    """Whether the environment configures a default account (a principal without `account` uses it)."""
    return settings.neuralsnap_api_key is not None or settings.neuroflash_configured


def read(name: str, entry: AccountEntry, environ: Mapping[str, str] | None = None) -> Account:
    """The account `name`'s credentials, read from its variables and files.

    Raises:
        ConfigurationError: a variable is unset or blank, a file cannot be read or is empty, or a NeuralSnap key
            is not shaped like one; the message names the account and the variable or file, never a value.
    """
    env = os.environ if environ is None else environ
    found: dict[str, str | None] = {}
    for credential in CREDENTIALS:
        source = entry.source(credential)
        found[credential] = None if source is None else _value(name, credential, source, env)
    key = found["neuralsnap_api_key"]
    if key is not None and not key.startswith(("ns_live_", "ns_test_")):
        where = entry.source("neuralsnap_api_key") or ("", "")
        raise ConfigurationError(
            f"account {name}: the NeuralSnap API key in {_named(where)} does not start with ns_live_ or ns_test_"
        )
    secret, api_key = found["neuroflash_client_secret"], found["neuralsnap_api_key"]
    return Account(
        name,
        neuroflash_client_id=found["neuroflash_client_id"],
        neuroflash_client_secret=SecretStr(secret) if secret is not None else None,
        neuralsnap_api_key=SecretStr(api_key) if api_key is not None else None,
    )


def _named(source: tuple[str, str]) -> str:
    how, where = source
    return f"the variable {where}" if how == "env" else f"the file {where}"


def _value(name: str, credential: str, source: tuple[str, str], env: Mapping[str, str]) -> str:
    how, where = source
    at = f"account {name}: {credential}"
    if how == "env":
        value = env.get(where, "").strip()
        if not value:
            raise ConfigurationError(f"{at}: the variable {where} is not set")
        return value
    try:
        raw = Path(where).read_bytes()[: MAX_SECRET_BYTES + 1]
    except OSError as exc:
        raise ConfigurationError(f"{at}: the file {where} cannot be read ({exc.strerror or exc})") from None
    try:
        value = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigurationError(f"{at}: the file {where} is not UTF-8 text") from None
    if not value:
        raise ConfigurationError(f"{at}: the file {where} is empty")
    if len(raw) > MAX_SECRET_BYTES or "\n" in value:
        raise ConfigurationError(f"{at}: the file {where} holds more than one line")
    return value


def entries(raw: Any) -> dict[str, AccountEntry]:
    """The `[accounts]` tables of a parsed team file, checked (the team file's own check reports the place).

    Raises:
        ValueError: `accounts` is not a table of tables, or (a `ValidationError`) a table has an unknown key, a
            bad value, or names too little or too much.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("accounts must be tables: [accounts.<name>]")
    return {str(name): AccountEntry.model_validate(table) for name, table in raw.items()}


def from_team_file(
    path: Path | None, environ: Mapping[str, str] | None = None, *, only: str | None = None
) -> Sequence[Account]:
    """Every account the team file at `path` declares (or just the one named `only`), its credentials read; none
    without a file.

    The team file's own check (`server/auth/team.py`) has refused a malformed table before this runs at start-up;
    this reads only the `[accounts]` part, so the runtime needs nothing above its floor.

    Raises:
        ConfigurationError: the file cannot be read, or a table or a credential is wrong (named).
    """
    if path is None:
        return ()
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8")).get("accounts")
        checked = entries(raw)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError, ValidationError) as exc:
        raise ConfigurationError(f"team file {path}: its accounts cannot be read ({type(exc).__name__})") from None
    return tuple(read(name, entry, environ) for name, entry in checked.items() if only in (None, name))
