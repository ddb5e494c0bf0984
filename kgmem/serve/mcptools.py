"""`kgmem mcp`: the memory as tools for agents, over the Model Context Protocol.

Built on the official SDK (`mcp` 2.x, `MCPServer`). Each tool has typed parameters, a
description an agent can act on, and a typed result (pydantic; the client gets both
the JSON text and the structured content). Results carry document ids and character
spans so that an agent can cite. Errors an agent can fix ("no document with id 'x'")
come back as tool errors with that one line.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from ..errors import KgmemError
from .schemas import (
    AskOut,
    DeletedOut,
    DocumentOut,
    DocumentsOut,
    ForgetOut,
    HitOut,
    IngestOut,
    MessageIn,
    NeighborsOut,
    RecallOut,
    SearchOut,
    StatsOut,
    TurnOut,
)
from .service import Service

F = TypeVar("F", bound=Callable[..., Any])
Mode = Literal["auto", "dense", "lexical", "hybrid", "graph"]
READ = ToolAnnotations(readOnlyHint=True, openWorldHint=False)
WRITE = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=True, openWorldHint=False)
DELETE = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=False)

INSTRUCTIONS = (
    "kgmem is a long-term memory of documents: passages plus a knowledge graph of the entities in them. "
    "Use `ask` for a short answer with citations, `search` to read the passages yourself, "
    "`graph_neighbors` to follow relations between entities, and `ingest_text` to remember new text. "
    "For conversations: `remember` a session's turns, `recall` what was said, `forget` it. "
    "Cite with the doc_id and the start/end character span each result carries."
)


def _one_line(fn: F) -> F:
    """A kgmem error (or a wrong value) reaches the agent as its message."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (KgmemError, ValueError) as exc:
            raise ToolError(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


def build_server(service: Service) -> MCPServer:
    server = MCPServer(name="kgmem", instructions=INSTRUCTIONS)

    @server.tool(annotations=READ)
    @_one_line
    def search(
        query: Annotated[str, Field(description="what to look for: a question or keywords")],
        k: Annotated[int, Field(ge=1, le=50, description="how many passages")] = 8,
        mode: Annotated[Mode, Field(description="auto (dense + lexical + graph, best in general), dense, "
                                                "lexical, hybrid or graph")] = "auto",
    ) -> SearchOut:
        """Find the passages in memory that best match a query. Each hit has the passage
        text, its document id and its character span in that document."""
        return SearchOut(hits=[HitOut(**h.as_dict()) for h in service.search(query, k=k, mode=mode)])

    @server.tool(annotations=READ)
    @_one_line
    def ask(
        question: Annotated[str, Field(description="a question about what the memory holds")],
        k: Annotated[int | None, Field(ge=1, le=50, description="passages to retrieve (default: the store's)")] = None,
        conversation: Annotated[str | None, Field(description="answer from this conversation's turns")] = None,
        user: Annotated[str | None, Field(description="answer from this user's turns")] = None,
        asker: Annotated[str | None, Field(description='who "I" is in the question')] = None,
    ) -> AskOut:
        """Answer a question from memory with a short answer ("G. Stanley Hall [1]") and
        citations: for each [n], the document id (a turn's for a conversation), the span
        and the quoted sentence. `found` is false when memory does not hold the answer;
        `notices` say why an answer was declined or changed."""
        ans = service.ask(question, k=k, conversation=conversation, user=user, asker=asker).as_dict()
        ans["passages"] = []  # the agent has the citations; `search` gives passages in full
        return AskOut(**ans)

    @server.tool(annotations=WRITE)
    @_one_line
    def ingest_text(
        text: Annotated[str, Field(description="the text to remember")],
        title: Annotated[str, Field(description="a title for it")] = "",
        id: Annotated[str | None, Field(description="a document id; the same id again replaces the document "
                                                    "(default: a hash of title and text)")] = None,
    ) -> IngestOut:
        """Remember a text: it is split into passages, embedded, and its entities and
        relations are added to the graph. Returns the document id."""
        return IngestOut(**service.ingest_records([{"id": id, "title": title, "text": text}]).as_dict())

    @server.tool(annotations=READ)
    @_one_line
    def get_document(
        id: Annotated[str, Field(description="a document id, as search or ask returned it")],
        start: Annotated[int, Field(ge=0, description="first character to return")] = 0,
        max_chars: Annotated[int, Field(ge=1, le=200_000, description="at most this many characters")] = 20_000,
    ) -> DocumentOut:
        """A stored document's text (a window of it for long documents: see `chars`)."""
        doc = service.get(id)
        return DocumentOut(id=doc.id, title=doc.title, text=doc.text[start : start + max_chars], source=doc.source,
                           meta=doc.meta, start=start, chars=len(doc.text))

    @server.tool(annotations=READ)
    @_one_line
    def list_documents(
        offset: Annotated[int, Field(ge=0, le=(1 << 63) - 1)] = 0,
        limit: Annotated[int, Field(ge=1, le=500)] = 50,
        prefix: Annotated[str, Field(description="only ids that start with this")] = "",
    ) -> DocumentsOut:
        """The documents in memory, in id order (ids, titles, sizes; no text)."""
        return DocumentsOut(**service.documents(offset=offset, limit=limit, prefix=prefix))

    @server.tool(annotations=DELETE)
    @_one_line
    def delete_document(id: Annotated[str, Field(description="the document id to forget")]) -> DeletedOut:
        """Forget a document: its passages, vectors and graph facts."""
        return DeletedOut(deleted=id, chunks=service.delete(id))

    @server.tool(annotations=READ)
    @_one_line
    def graph_neighbors(
        entity: Annotated[str, Field(description="a person, place, organisation, … as written in the text")],
        hops: Annotated[int, Field(ge=1, le=3, description="how far to follow relations")] = 1,
        limit: Annotated[int, Field(ge=1, le=500)] = 50,
    ) -> NeighborsOut:
        """Facts around an entity in the knowledge graph (subject, predicate, object),
        each cited to the document spans it was read from."""
        return NeighborsOut(**service.neighbors(entity, hops=hops, limit=limit))

    @server.tool(annotations=WRITE)
    @_one_line
    def remember(
        messages: Annotated[list[MessageIn], Field(description="the session's turns, in order: "
                                                               "{speaker, text, id?, image_caption?}")],
        conversation: Annotated[str, Field(description="the conversation's id (no '/')")],
        user: Annotated[str | None, Field(description="whose conversation it is")] = None,
        at: Annotated[str | None, Field(description="when the session took place (ISO 8601); 'yesterday' "
                                                    "and the like in the turns are resolved against it")] = None,
    ) -> IngestOut:
        """Remember what was said in a conversation session. Sending the same session
        again adds nothing. Returns the turn ids."""
        report = service.remember([m.model_dump(exclude_none=True) for m in messages], conversation, user, at)
        return IngestOut(**report.as_dict())

    @server.tool(annotations=READ)
    @_one_line
    def recall(
        query: Annotated[str, Field(description="what to remember: a question or keywords")],
        conversation: Annotated[str | None, Field(description="only this conversation")] = None,
        user: Annotated[str | None, Field(description="only this user's conversations")] = None,
        k: Annotated[int, Field(ge=1, le=50)] = 8,
        since: Annotated[str | None, Field(description="only turns said at or after this time (ISO 8601)")] = None,
        until: Annotated[str | None, Field(description="only turns said at or before this time")] = None,
    ) -> RecallOut:
        """Turns of past conversations that match a query, each with its id, speaker,
        time, the relative dates in it resolved, and the turns around it."""
        turns = service.recall(query, conversation=conversation, user=user, k=k, since=since, until=until)
        return RecallOut(turns=[TurnOut(**t.as_dict()) for t in turns])

    @server.tool(annotations=DELETE)
    @_one_line
    def forget(
        conversation: Annotated[str | None, Field(description="forget this whole conversation")] = None,
        user: Annotated[str | None, Field(description="forget everything this user said")] = None,
        turns: Annotated[list[str] | None, Field(description="forget these turn ids")] = None,
    ) -> ForgetOut:
        """Forget remembered turns: their text, vectors and graph facts."""
        return ForgetOut(forgotten=service.forget(conversation=conversation, user=user, turns=turns))

    @server.tool(annotations=READ)
    @_one_line
    def stats() -> StatsOut:
        """How much the memory holds: documents, passages, vectors, entities, relations."""
        return StatsOut(**service.stats())

    return server
