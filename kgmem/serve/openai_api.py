"""The OpenAI chat API on `kgmem serve`: any chat UI or SDK that speaks it gets kgmem's memory.

- `GET /v1/models` lists one model, `kgmem`.
- `POST /v1/chat/completions` answers the last user message from memory (`Service.ask`),
  streamed as `chat.completion.chunk` events when `stream` is true. The reply's content is
  the answer with its `[n]` markers and, after a blank line, a "Sources:" list (title,
  document id and character span of each); the whole kgmem answer is also under the
  reply's `kgmem` key (an extra field: SDKs keep it, e.g. `completion.model_extra`).
- A request that names a `user` is a conversation: the messages before the last are
  remembered as that user's turns (a re-sent history adds nothing: its turns have the same
  ids) and the question is answered from the user's conversation memory, as `/ask` does
  with `user`.
The model, temperature and token limits a client sends are accepted and not used: the
server's own backend answers. Errors have OpenAI's shape, `{"error": {"message", "type",
"code"}}`, with the same status codes as the rest of the API.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..pipelines.query import Answer
from .service import BadRequest, Service
from .streaming import stream_from_thread

MODEL = "kgmem"
CREATED = int(time.time())


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str = Field(max_length=40)
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionIn(BaseModel):
    """OpenAI's chat-completions request; fields kgmem does not use are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = MODEL
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=1000)
    stream: bool = False
    user: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[^/]+$")


def text_of(message: ChatMessageIn) -> str:
    """A message's text: its string, or its `text` parts joined."""
    if isinstance(message.content, str):
        return message.content
    parts = [p.get("text", "") for p in message.content or [] if isinstance(p, dict) and p.get("type") == "text"]
    return "\n".join(p for p in parts if isinstance(p, str))


def question_of(body: ChatCompletionIn) -> tuple[str, list[ChatMessageIn]]:
    """The last user message's text, and the messages before it."""
    for i in range(len(body.messages) - 1, -1, -1):
        if body.messages[i].role == "user":
            question = text_of(body.messages[i]).strip()
            if not question:
                raise BadRequest("messages: the last user message has no text")
            return question, body.messages[:i]
    raise BadRequest("messages: no message with role 'user' to answer")


def sources(answer: Answer) -> str:
    """The citations as lines a person reads under the answer."""
    lines = [f"[{c.n}] {c.title or c.doc_id} ({c.doc_id}, chars {c.start}-{c.end})" for c in answer.citations]
    return "\n\nSources:\n" + "\n".join(lines) if lines else ""


def _completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def _usage(answer: Answer) -> dict[str, int]:
    prompt = int(answer.usage.get("prompt_tokens") or 0)
    completion = int(answer.usage.get("completion_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _error(message: str, status: int) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}, "detail": message},
                        status_code=status)


def _remember_history(service: Service, user: str, history: list[ChatMessageIn]) -> None:
    turns = [{"speaker": user if m.role == "user" else "assistant", "text": text_of(m)}
             for m in history if m.role in ("user", "assistant") and text_of(m).strip()]
    if not turns:
        return
    # One session per chat: keyed by its first turn, so each re-sent history maps to the same ids.
    session = hashlib.sha1(json.dumps(turns[0], sort_keys=True).encode()).hexdigest()[:12]
    service.remember(turns, conversation=f"openai-{user}", user=user, session=session)


def add_routes(app: FastAPI, service: Service, status_of: Any) -> None:
    """Mount `/v1/models` and `/v1/chat/completions` on the app; `status_of(exc)` maps an
    error to its status code (the API's own table)."""

    @app.get("/v1/models", tags=["openai"])
    def models() -> dict[str, Any]:
        """The one model this server answers as (OpenAI's list shape)."""
        return {"object": "list", "data": [{"id": MODEL, "object": "model", "created": CREATED, "owned_by": "kgmem"}]}

    @app.post("/v1/chat/completions", tags=["openai"],
              responses={200: {"content": {"text/event-stream": {}},
                               "description": "chat.completion JSON; with `stream`, chat.completion.chunk events"}})
    async def chat_completions(body: ChatCompletionIn) -> Any:
        """Answer the last user message from memory, OpenAI's way (see the module's doc)."""
        try:
            question, history = question_of(body)
            if body.user:
                await asyncio.to_thread(_remember_history, service, body.user, history)
        except Exception as exc:  # noqa: BLE001 - one JSON error, OpenAI's shape
            return _error(str(exc), status_of(exc))
        model = body.model or MODEL
        cid = _completion_id()
        if body.stream:
            return _stream(service, question, body.user, model, cid, status_of)
        try:
            answer = await asyncio.to_thread(service.ask, question, user=body.user)
        except Exception as exc:  # noqa: BLE001
            return _error(str(exc), status_of(exc))
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": answer.text + sources(answer)}}],
            "usage": _usage(answer), "kgmem": answer.as_dict(),
        })


def _stream(service: Service, question: str, user: str | None, model: str, cid: str,
            status_of: Any) -> StreamingResponse:
    created = int(time.time())
    streamed: list[str] = []

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        event = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"

    def job(push: Any, cancelled: Any) -> None:
        answer = service.ask(question, user=user, on_token=lambda t: push("token", t), cancelled=cancelled)
        push("answer", answer)

    def render(kind: str, data: Any) -> str:
        if kind == "token":
            streamed.append(data)
            return chunk({"content": data})
        if kind == "answer":
            # The model's words came as tokens; the answer adds its [n] markers (or is changed,
            # e.g. to "not in memory"): the rest, or the final answer below, then the sources.
            said = "".join(streamed)
            rest = data.text[len(said):] if data.text.startswith(said) else ("\n\n" if said else "") + data.text
            tail = rest + sources(data)
            return ((chunk({"content": tail}) if tail else "")
                    + chunk({}, "stop", usage=_usage(data), kgmem=data.as_dict()) + "data: [DONE]\n\n")
        # an error after the stream began: OpenAI's error event, then the end
        return f"data: {json.dumps({'error': {'message': data, 'type': 'server_error'}})}\n\ndata: [DONE]\n\n"

    return stream_from_thread(job, render, first=chunk({"role": "assistant", "content": ""}),
                              on_error=lambda exc: str(exc))
