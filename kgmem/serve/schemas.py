"""The HTTP API's contract and the MCP tools' typed results, as pydantic models.

Other programs code against these shapes: fields are only ever added, never renamed
or removed. Each model allows extra fields, so a response may carry more than its
model names (e.g. a hit's per-retriever ranks)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

_OPEN = ConfigDict(extra="allow")
# A pattern (searched, as JSON Schema does): not empty, not only spaces. \x1c-\x1f are spaces to
# Python's str.strip (which the library checks with), not to every regex engine's \s.
WORDS = r"[^\s\x1c-\x1f]"
MODE = "^(auto|dense|lexical|hybrid|graph)$"


def _one_of_given(*names: str) -> dict[str, Any]:
    """JSON Schema for "at least one of these fields, not empty", which a validator enforces."""
    def given(name: str) -> dict[str, Any]:
        return {"required": [name], "properties": {name: {"anyOf": [{"type": "string", "pattern": WORDS},
                                                                      {"type": "array", "minItems": 1}]}}}
    return {"anyOf": [given(n) for n in names]}


class FieldErrorOut(BaseModel):
    field: str = Field(description="where: a parameter name or a path into the body, e.g. records[0].text")
    message: str


class ErrorOut(BaseModel):
    """Every error's body: one line, or (422) one entry per wrong field."""
    detail: str | list[FieldErrorOut]


class HitOut(BaseModel):
    model_config = _OPEN
    doc_id: str
    title: str
    text: str = Field(description="the passage")
    start: int = Field(description="where the passage starts in its document (characters)")
    end: int
    score: float
    chunk_id: int


class SearchOut(BaseModel):
    model_config = _OPEN
    hits: list[HitOut]


class CitationOut(BaseModel):
    model_config = _OPEN
    n: int = Field(description="the [n] marker in the answer")
    doc_id: str
    start: int = Field(description="the cited span in the document's text (characters)")
    end: int
    quote: str = Field(description="document.text[start:end]")
    title: str = ""


class HopOut(BaseModel):
    model_config = _OPEN
    phrase: str = Field(description="the part of the question asked on its own")
    asked: str
    bridge: str = Field(description="the no-LLM reader's answer to it")
    question: str = Field(description="the question with the phrase replaced by the bridge, as searched")


class AskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=4000, pattern=WORDS)
    k: int | None = Field(default=None, ge=1, le=100, description="passages to retrieve")
    budget: int | None = Field(default=None, ge=128, le=131072, description="context tokens (default: the model's)")
    mode: str = Field(default="auto", pattern=MODE)
    conversation: str | None = Field(default=None, max_length=200, description="answer from this conversation's turns")
    user: str | None = Field(default=None, max_length=200, description="answer from this user's turns")
    asker: str | None = Field(default=None, max_length=200, description='who "I" is in the question')


class AskOut(BaseModel):
    model_config = _OPEN
    question: str
    answer: str = Field(description='the short answer with its citation markers, e.g. "G. Stanley Hall [2]"')
    short: str = Field(description="the answer without markers")
    found: bool = Field(description="false: memory does not hold the answer")
    citations: list[CitationOut]
    passages: list[HitOut] = []
    backend: str = ""
    notices: list[str] = Field(default=[], description="why an answer was declined or changed, and other notes")
    hops: list[HopOut] = Field(default=[], description="the question followed one hop at a time")


class RecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(default=None, max_length=1000, description="default: a hash of title and text")
    title: str = ""
    text: str
    source: str = ""
    meta: dict[str, Any] = {}


class IngestIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": [{"required": ["records"]}, {"required": ["texts"]}]})
    records: list[RecordIn] = Field(default=None, description="documents with ids (or `texts`)")  # type: ignore[assignment]
    texts: list[str] = Field(default=None, description="plain texts (or `records`)")  # type: ignore[assignment]
    title: str = Field(default="", description="the title given to each of `texts`")

    @model_validator(mode="after")
    def one_kind(self) -> "IngestIn":
        if (self.records is None) == (self.texts is None):
            raise ValueError("send either records or texts")
        return self


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_of_given("speaker", "role"))
    speaker: str | None = Field(default=None, description="who said it (or `role`)")
    role: str | None = None
    text: str = Field(min_length=1, pattern=WORDS)
    id: str | None = Field(default=None, description="the turn's id (default: from the session and position)")
    image_caption: str | None = None


class RememberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conversation: str = Field(min_length=1, max_length=200, pattern=r"^[^/]*[^/\s][^/]*$")
    messages: list[MessageIn] = Field(min_length=1)
    user: str | None = None
    at: str | None = Field(default=None, pattern=WORDS, description="when the session took place: ISO 8601 or "
                                                                    "'1:56 pm on 8 May, 2023'")
    session: str | None = None


class TurnOut(BaseModel):
    model_config = _OPEN
    id: str
    conversation: str
    speaker: str
    text: str
    at: str | None
    score: float
    dates: list[dict[str, Any]] = Field(default=[], description="relative times in it, resolved")
    context: list[dict[str, Any]] = Field(default=[], description="the turns just before and after")


class RecallOut(BaseModel):
    turns: list[TurnOut]


class ForgetIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_of_given("conversation", "user", "turns"))
    conversation: str | None = None
    user: str | None = None
    turns: list[str] | None = None


class ForgetOut(BaseModel):
    forgotten: int


class FailedOut(BaseModel):
    item: str
    reason: str


class IngestOut(BaseModel):
    model_config = _OPEN
    added: int
    unchanged: int
    replaced: int
    chunks: int
    failed: list[FailedOut]
    ids: list[str] = Field(description="the documents stored (or found unchanged), in order")


class DocumentOut(BaseModel):
    model_config = _OPEN
    id: str
    title: str
    text: str
    source: str = ""
    meta: dict[str, Any] = {}


class DocumentsOut(BaseModel):
    model_config = _OPEN
    documents: list[dict[str, Any]]
    offset: int
    limit: int
    total: int


class DeletedOut(BaseModel):
    deleted: str
    chunks: int


class FactOut(BaseModel):
    model_config = _OPEN
    subject: str
    predicate: str
    object: str
    kind: str
    citations: list[dict[str, Any]]


class EntityOut(BaseModel):
    model_config = _OPEN
    name: str
    label: str
    aliases: list[str]
    mentions: list[dict[str, Any]]


class NeighborsOut(BaseModel):
    model_config = _OPEN
    entity: str
    label: str
    hops: int
    facts: list[FactOut]
    labels: dict[str, str] = Field(default={}, description="the entity type of each name in the facts")


class PathOut(BaseModel):
    model_config = _OPEN
    source: str
    target: str
    found: bool
    facts: list[FactOut]


class StatsOut(BaseModel):
    model_config = _OPEN
    documents: int
    chunks: int
    vectors: int


class HealthOut(BaseModel):
    model_config = _OPEN
    ok: bool
    generation: int
    read_only: bool
