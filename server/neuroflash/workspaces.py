"""Which workspace a call means when it names none: the configured default, or the only one."""

from __future__ import annotations

from server.errors import InvalidArguments
from server.neuroflash.client import NeuroflashClient
from server.neuroflash.wire import Workspace


class WorkspaceResolver:
    """Which workspace a call means when it names none (the account's only one is looked up once)."""

    def __init__(self, client: NeuroflashClient, default_id: str | None) -> None:
        self._client = client
        self.default_id = default_id
        self._only: str | None = None

    async def resolve(self, workspace_id: str | None) -> str:
        """The workspace a call means: the one it names, the configured default, or the account's only one.

        Raises:
            InvalidArguments: none is named and the account has several (or no) workspaces and no default.
        """
        if workspace_id:
            return workspace_id
        if self.default_id:
            return self.default_id
        if self._only is not None:
            return self._only
        workspaces = await self._client.workspaces()
        if len(workspaces) == 1:
            self._only = workspaces[0].id
            return self._only
        raise InvalidArguments(
            "workspace_id is required: this account has "
            + ("no workspaces." if not workspaces else f"{len(workspaces)} workspaces and no default is set."),
            hint="Pass workspace_id, one of: " + _choices(workspaces)
            if workspaces
            else "Ask the user to check the neuroflash service account.",
            details={"workspaces": [w.model_dump() for w in workspaces]},
        )

    def default(self, workspaces: list[Workspace]) -> str | None:
        """The id tools treat as the default, given the account's workspaces."""
        if self.default_id:
            return self.default_id
        return workspaces[0].id if len(workspaces) == 1 else None


def _choices(workspaces: list[Workspace]) -> str:
    return ", ".join(f"{w.id} ({w.name})" for w in workspaces) + "."
