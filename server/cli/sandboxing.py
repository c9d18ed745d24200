"""`--sandbox`: start the emulator of both upstreams in this process and point the server at it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping

from pydantic import SecretStr

from server.config import Settings
from server.errors import ConfigurationError
from server.sandbox import catalog
from server.sandbox.runner import Emulator, emulator_environment, seed_sandbox
from server.sandbox.state import EmulatorState
from server.sandbox.variants import Variants
from server.sandbox.world import world_file
from server.state.opening import default_state_dir

log = logging.getLogger("server")
PROFILE_VARIABLE = "FLASHSNAP_SANDBOX_PROFILE"  # which of the vendors' disagreeing pages the emulator follows


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


@contextlib.contextmanager
def sandbox_environment(environ: Mapping[str, str], *, reset: bool = False) -> Iterator[dict[str, str]]:
    """Start the emulator in this process and yield the environment that points at it.

    Only the FLASHSNAP_* variables of `environ` are kept: real upstream variables never reach a sandbox.

    Raises:
        ConfigurationError: FLASHSNAP_SANDBOX_PROFILE names a profile that does not exist.
    """
    own = {k: v for k, v in environ.items() if k.startswith("FLASHSNAP_")}
    # One world per state directory, shared by every --sandbox process; with FLASHSNAP_STATE=memory, this one's own.
    settings = Settings.from_env(own)
    world = None if settings.store == "memory" else world_file(settings.state_dir or default_state_dir())
    try:
        variants = Variants.profile(*_names(own.get(PROFILE_VARIABLE, "")))
    except ValueError as exc:
        raise ConfigurationError(f"{PROFILE_VARIABLE}: {exc}") from None
    state = seed_sandbox(EmulatorState(world=world, reset_world=reset, variants=variants))
    with contextlib.closing(state), Emulator(state) as emulator:
        log.warning("SANDBOX MODE: serving the neuroflash and NeuralSnap emulator at %s", emulator.url)
        yield {**own, **emulator_environment(emulator)}


def sandbox_reader(settings: Settings) -> Settings:
    """The sandbox's credentials beside `settings`' state directory: what `status` opens sandbox documents with.

    They are the emulator's public demo credentials: sealing protects nothing a sandbox holds, and they let
    `flashsnap-mcp status` show a sandbox session's token and quotas, as it shows a live one's.
    """
    return settings.model_copy(
        update={
            "sandbox": True,
            "neuroflash_client_id": catalog.DEMO_CLIENT_ID,
            "neuroflash_client_secret": SecretStr(catalog.DEMO_CLIENT_SECRET),
            "neuralsnap_api_key": SecretStr(catalog.DEMO_API_KEY),
        }
    )
