"""neuroflash's wire models: what its API sends and takes."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Workspace(BaseModel):
    id: str
    name: str


class Quota(BaseModel):
    """One entry of the quotas endpoint, in its camelCase wire names."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    usage_type_key: str
    # Required: a quota that leaves them out is unreadable, not "spent".
    limit_amount: int
    used_amount: int
    available_amount: int
    limit_amount_daily: int
    used_amount_daily: int
    bonus_amount: int = 0
    spillover_amount: int = 0
    daily_refreshed: date | None = None
    fair_use_limit_reached: bool = False


class Model(BaseModel):
    id: str
    name: str
    provider: str
    description: str | None = None
    context_window: int | None = None
    available: bool = True
    reasoning_model: bool = False


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    """The chat-completions body; unset options are left out of the wire form."""

    messages: list[ChatMessage]
    model: str
    temperature: float | None = None
    max_tokens: int | None = None
    reasoning_effort: str | None = None
    stream: bool = True


class ChunkDelta(BaseModel):
    content: str | None = None


class ChunkChoice(BaseModel):
    delta: ChunkDelta = Field(default_factory=ChunkDelta)
    finish_reason: str | None = None


class ChunkUsage(BaseModel):
    words_used: int = 0


class ChatChunk(BaseModel):
    id: str | None = None
    model: str | None = None
    choices: list[ChunkChoice] = Field(default_factory=list)
    usage: ChunkUsage | None = None


class ChatResult(BaseModel):
    """A finished generation: the whole text and what it cost."""

    text: str
    model: str
    finish_reason: str
    words_used: int
    request_id: str | None


class BrandVoice(BaseModel):
    """A brand voice of a workspace (the brand-voice service's HAL answers; unknown fields ignored)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str
    description: str | None = Field(default=None, description="How the voice sounds, in the service's words.")
    language: str | None = None


class TwinGroup(BaseModel):
    """A static group of digital twins: a kind of audience, found by its key."""

    model_config = ConfigDict(extra="ignore")

    key: str
    name: str | None = None
    description: str | None = None


class Twin(BaseModel):
    """A digital twin: a simulated member of an audience."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str | None = None
    description: str | None = None


class TwinAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    answer: str
    reason: str | None = None


class TwinGroupAnswer(BaseModel):
    """A group chat's answer: a summary, and each twin's answer and reason by twin id."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    summary: str | None = None
    twin_responses: dict[str, TwinAnswer] = Field(default_factory=dict)
