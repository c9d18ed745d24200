"""delete_snapshot: remove one snapshot from the user's NeuralSnap brain, once the user agreed."""

from pydantic import BaseModel

from server.tooling import consent
from server.tooling.consent import ask_first
from server.tooling.spec import DESTRUCTIVE, Confirm, Cost, MaxWait, SnapshotId, ToolContext, ToolSpec, runtime


class Deleted(BaseModel):
    id: str
    deleted: bool


async def delete_snapshot(
    ctx: ToolContext, id: SnapshotId, confirm: Confirm = None, max_wait_s: MaxWait = None
) -> Deleted:
    """Delete one snapshot from the user's NeuralSnap brain, for good; the user is asked first.

    A client that cannot ask the user gets confirmation_required instead:
    ask the user, and call again with confirm true only if they agreed. A snapshot
    that does not exist is not_found, without a question.

    Raises:
        NotConfirmed: the user did not agree, or was not asked yet (nothing sent).
        FlashsnapError: what the NeuralSnap service raises.
    """
    shared = runtime(ctx)
    neuralsnap = shared.neuralsnap()
    if consent.confirm_delete(shared.settings):

        async def exists() -> None:  # a read: a snapshot that is not there is refused without a question
            await neuralsnap.get(id)

        await ask_first(
            ctx,
            f"Delete the snapshot {id} from your NeuralSnap brain? It cannot be undone.",
            confirm=confirm,
            setting="FLASHSNAP_CONFIRM_DELETE",
            before=exists,
        )
    await neuralsnap.delete(id)
    return Deleted(id=id, deleted=True)


TOOL = ToolSpec(
    delete_snapshot,
    title="Delete a NeuralSnap snapshot",
    toolset="neuralsnap-write",
    annotations=DESTRUCTIVE,
    cost=Cost.DESTROYS,
    purpose="delete a saved thought for good; ask the user first.",
    changes=("resources",),
)
