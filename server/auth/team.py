"""The team file (FLASHSNAP_TEAM_FILE, TOML): who the principals are, what each may do, and how each is recognised.

Read whole and checked before it is used: an unknown key, a duplicate name or token, a bad value or an unknown
scope is refused with its place in the file named, so a typo never silently widens or narrows anyone's access.
Holding and reloading the file is `server.auth.reloading`'s job.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from server.auth import scopes
from server.errors import ConfigurationError
from server.upstream.accounts import KEYS as ACCOUNT_KEYS
from server.upstream.accounts import AccountEntry

# A principal's name is a metrics label and a log field: short, printable, no spaces or quotes.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$"
OTHER = "other"  # the label of every caller the team file does not name (bounded cardinality)
MATCH_KEYS = ("sub", "client_id", "iss", "groups")
MAX_WEIGHT = 1000.0  # a principal's weight at most: 1,000 turns to a weight-1 principal's one

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Hash = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")]
ClaimValue = Annotated[str, StringConstraints(min_length=1, max_length=1000)]


def _known_scopes(value: list[str]) -> list[str]:
    unknown = [s for s in value if s not in scopes.ALL]
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}; the scopes are {', '.join(scopes.ALL)}")
    if len(set(value)) != len(value):
        raise ValueError("a scope is listed twice")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Match(_Strict):
    """OAuth claims that pick a principal: every one given must match (a list claim by membership)."""

    sub: ClaimValue | None = None
    client_id: ClaimValue | None = None
    iss: ClaimValue | None = None
    groups: ClaimValue | None = None


Cap = Annotated[int, Field(ge=0, le=1_000_000_000)]


class Limits(_Strict):
    """What `[defaults]` and each principal may set: its scopes, its own asking thresholds, its weight, and its
    budgets on the shared stocks (None: no cap of its own; `server/auth/budgets.py` keeps the counts)."""

    scopes: list[str] | None = None
    confirm_words: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    confirm_delete: bool | None = None
    # Its share of the upstream budget when others wait too (weighted fair queuing, server/scheduler/fair.py),
    # and of the last words when they are scarce (server/auth/shares.py).
    weight: Annotated[float, Field(gt=0, le=MAX_WEIGHT, allow_inf_nan=False)] | None = None
    words_per_day: Cap | None = None
    words_per_month: Cap | None = None
    crystallize_tokens_per_month: Cap | None = None
    searches_per_month: Cap | None = None
    generations_in_flight: Annotated[int, Field(ge=0, le=10_000)] | None = None

    @field_validator("scopes")
    @classmethod
    def _check_scopes(cls, value: list[str] | None) -> list[str] | None:
        return value if value is None else _known_scopes(value)


class Entry(Limits):
    name: Name
    token_sha256: Hash | None = None
    match: Match | None = None
    account: Name | None = None  # an `[accounts.<name>]` table; None: the default account (the environment's)


class _File(_Strict):
    defaults: Limits = Limits()
    accounts: dict[Name, AccountEntry] = {}
    principals: list[Entry] = []


BUDGET_KEYS = ("words_per_day", "words_per_month", "crystallize_tokens_per_month", "searches_per_month",
               "generations_in_flight")  # fmt: skip


@dataclass(frozen=True)
class Caps:
    """A principal's budgets on the shared stocks, each None when the team file sets none."""

    words_per_day: int | None = None
    words_per_month: int | None = None
    crystallize_tokens_per_month: int | None = None
    searches_per_month: int | None = None
    generations_in_flight: int | None = None

    @staticmethod
    def of(entry: Limits, defaults: Limits) -> Caps:
        """An entry's caps, each key it leaves out taken from `[defaults]`."""
        own = {key: getattr(entry, key) for key in BUDGET_KEYS}
        return Caps(**{key: getattr(defaults, key) if value is None else value for key, value in own.items()})

    def any(self) -> bool:
        return any(getattr(self, key) is not None for key in BUDGET_KEYS)


NO_CAPS = Caps()


@dataclass(frozen=True)
class Principal:
    """One principal as the server uses it: its name, its policy's scopes, and its thresholds (None: the server's)."""

    name: str
    policy: frozenset[str]
    token_sha256: str | None = None
    match: Mapping[str, str] = field(default_factory=dict)
    confirm_words: int | None = None
    confirm_delete: bool | None = None
    account: str | None = None  # the upstream account its calls use; None: the default one
    weight: float = 1.0  # its turns at a shared gate, and its share of scarce words, against another's 1
    caps: Caps = NO_CAPS

    def matches(self, claims: Mapping[str, Any], groups_claim: str = "groups") -> bool:
        """Whether an OAuth token's claims are this principal's: each given key equal, `groups` by membership."""
        if not self.match:
            return False
        for key, wanted in self.match.items():
            got = claims.get(groups_claim if key == "groups" else key)
            if isinstance(got, list | tuple):
                if wanted not in got:
                    return False
            elif got != wanted:
                return False
        return True


@dataclass(frozen=True)
class Team:
    """The principals of one team file, in its order, and the policy of a caller it does not name."""

    principals: tuple[Principal, ...] = ()
    default_policy: frozenset[str] = frozenset(scopes.CALLING)
    default_confirm_words: int | None = None
    default_confirm_delete: bool | None = None
    default_weight: float = 1.0  # the weight of a caller the file does not name
    default_caps: Caps = NO_CAPS  # a caller the file does not name: `[defaults]`' budgets
    accounts: tuple[str, ...] = ()  # the names of its `[accounts.<name>]` tables (read by the runtime at start)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.principals)

    def by_name(self, name: str) -> Principal | None:
        return next((p for p in self.principals if p.name == name), None)

    def by_token_hash(self) -> dict[str, Principal]:
        """The principals that hold a named token, by its lowercase hex SHA-256."""
        return {p.token_sha256: p for p in self.principals if p.token_sha256 is not None}

    def matching(self, claims: Mapping[str, Any], groups_claim: str = "groups") -> Principal | None:
        """The first principal whose `match` the claims satisfy (the file's order decides)."""
        return next((p for p in self.principals if p.matches(claims, groups_claim)), None)


NO_TEAM = Team()


def load(path: Path) -> Team:
    """The team file at `path`, checked.

    Raises:
        ConfigurationError: it cannot be read, is not TOML, or breaks a rule; the message names where.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigurationError(f"team file {path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"team file {path}: is not UTF-8 text") from None
    return parse(text, where=f"team file {path}")


def parse(text: str, *, where: str = "team file") -> Team:
    """A team file's text, checked (see `load`).

    Raises:
        ConfigurationError: not TOML, or a rule broken; the message names the key and the entry.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{where}: not valid TOML: {exc}") from None
    try:
        checked = _File.model_validate(raw)
    except ValidationError as exc:
        raise ConfigurationError(f"{where}: " + "; ".join(_problem(err, raw) for err in exc.errors())) from None
    _check_unique(checked.principals, where)
    _check_routes(checked, where)
    given = checked.defaults.scopes
    default_policy = frozenset(given) if given is not None else NO_TEAM.default_policy
    return Team(
        principals=tuple(_principal(entry, default_policy, checked.defaults) for entry in checked.principals),
        default_policy=default_policy,
        default_confirm_words=checked.defaults.confirm_words,
        default_confirm_delete=checked.defaults.confirm_delete,
        default_weight=checked.defaults.weight or 1.0,
        default_caps=Caps.of(checked.defaults, checked.defaults),
        accounts=tuple(checked.accounts),
    )


def _principal(entry: Entry, default_policy: frozenset[str], defaults: Limits) -> Principal:
    match = {k: v for k, v in (entry.match.model_dump() if entry.match else {}).items() if v is not None}
    return Principal(
        name=entry.name,
        policy=frozenset(entry.scopes) if entry.scopes is not None else default_policy,
        token_sha256=entry.token_sha256.lower() if entry.token_sha256 else None,
        match=match,
        confirm_words=entry.confirm_words if entry.confirm_words is not None else defaults.confirm_words,
        confirm_delete=entry.confirm_delete if entry.confirm_delete is not None else defaults.confirm_delete,
        account=entry.account,
        weight=entry.weight or defaults.weight or 1.0,
        caps=Caps.of(entry, defaults),
    )


def _check_routes(checked: _File, where: str) -> None:
    for n, entry in enumerate(checked.principals):
        if entry.account is not None and entry.account not in checked.accounts:
            known = ", ".join(checked.accounts) or "none: add an [accounts.<name>] table"
            raise ConfigurationError(
                f"{where}: principals[{n}] ({entry.name}).account: no account {entry.account!r} "
                f"(the accounts are {known})"
            )


def _check_unique(entries: Sequence[Entry], where: str) -> None:
    names: set[str] = set()
    hashes: set[str] = set()
    for n, entry in enumerate(entries):
        at = f"{where}: principals[{n}] ({entry.name})"
        if entry.name == OTHER:
            raise ConfigurationError(f"{at}: the name {OTHER!r} is kept for callers the file does not name")
        if entry.name in names:
            raise ConfigurationError(f"{at}: the name {entry.name!r} is used twice; each principal needs its own")
        names.add(entry.name)
        if entry.token_sha256 is not None:
            if entry.token_sha256.lower() in hashes:
                raise ConfigurationError(f"{at}: token_sha256 is used twice; each principal needs its own token")
            hashes.add(entry.token_sha256.lower())
        if entry.token_sha256 is None and (entry.match is None or not entry.match.model_fields_set):
            raise ConfigurationError(f"{at}: names nobody: give it a token_sha256 (tokens mode) or a match (oauth)")


ENTRY_KEYS = ("name", "token_sha256", "match", "account", "scopes", "confirm_words", "confirm_delete", "weight",
              *BUDGET_KEYS)  # fmt: skip
_KEYS = {
    (): "defaults, accounts, principals",
    ("defaults",): ", ".join(("scopes", "confirm_words", "confirm_delete", "weight", *BUDGET_KEYS)),
    ("accounts",): ", ".join(ACCOUNT_KEYS),
    ("principals",): ", ".join(ENTRY_KEYS),
    ("match",): ", ".join(MATCH_KEYS),
}
_PATTERN_RULES = {
    "name": "must be 1-64 letters, digits or . _ @ + - (starting with a letter or digit)",
    "token_sha256": "must be 64 hex digits: the SHA-256 of the token (`flashsnap-mcp team token NAME` prints it)",
    "account": "must name an account: 1-64 letters, digits or . _ @ + - (starting with a letter or digit)",
}


def _problem(err: Any, raw: dict[str, Any]) -> str:
    """One pydantic error as a person reads it: where in the file (with the principal's name), and what is wrong."""
    loc = tuple(err["loc"])
    place = _place(loc, raw)
    kind = err["type"]
    if kind == "extra_forbidden":
        shape = tuple("principals" if isinstance(p, int) else p for p in loc[:-1] if not isinstance(p, int))
        shape = shape[-1:] if shape and shape[-1] == "match" else shape[:1]
        return f"{place}: unknown key (the keys are {_KEYS.get(shape, '')})"
    if kind == "string_pattern_mismatch" and loc and loc[-1] in _PATTERN_RULES:
        return f"{place}: {_PATTERN_RULES[str(loc[-1])]}"
    if kind == "string_pattern_mismatch" and loc[:1] == ("accounts",) and loc[-1] == "[key]":
        return f"{place}: an account's name {_PATTERN_RULES['name']}"
    if kind == "string_pattern_mismatch" and loc and str(loc[-1]).endswith("_env"):
        return f"{place}: must be an environment variable's name (letters, digits, _), not its value"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{place}: {message}"


def _place(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    parts: list[str] = []
    for n, part in enumerate(loc):
        if isinstance(part, int):
            parts[-1] += f"[{part}]"
            if loc[n - 1] == "principals" and n == 1:
                entry = (raw.get("principals") or [None] * (part + 1))[part]
                if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                    parts[-1] += f" ({_printable(entry['name'])})"
        elif part in ("list[str]", "int", "bool", "str"):  # pydantic's union branch names say nothing here
            continue
        else:
            parts.append(str(part))
    return ".".join(parts) or "the file"


def _printable(name: str) -> str:
    return re.sub(r"[^\x20-\x7e]", "?", name)[:64]
