"""The emulator of both upstream APIs, served on loopback for `--sandbox` and for the tests."""

from server.sandbox.runner import Emulator
from server.sandbox.state import EmulatorState

__all__ = ["Emulator", "EmulatorState"]
