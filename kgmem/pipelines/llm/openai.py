"""`openai`: any OpenAI-compatible chat-completions server (Ollama, vLLM, llama.cpp's
server, a hosted API), with the same answer step as the in-process model.

Settings: KGMEM_LLM_BASE_URL (or OPENAI_BASE_URL), KGMEM_LLM_MODEL, KGMEM_LLM_API_KEY (or
OPENAI_API_KEY). The key is sent only to that base URL; a key sent over plain http to a
host other than this machine gets a warning. Servers that reject `response_format` are
asked again without it (the instructions still ask for JSON).
"""
from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from .base import ChatBackend, ChatResult, LLMError, OnToken

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class OpenAIBackend(ChatBackend):
    def __init__(self, base_url: str | None = None, model: str | None = None, api_key: str | None = None,
                 context_window: int = 4096, timeout: float = 120.0, count_tokens: Callable[[str], int] | None = None):
        self.base_url = (base_url or os.environ.get("KGMEM_LLM_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
                         or "http://localhost:11434/v1").rstrip("/")
        self.model = model or os.environ.get("KGMEM_LLM_MODEL") or "llama3.2"
        self.api_key = api_key or os.environ.get("KGMEM_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY") or ""
        self.name = f"openai:{self.model}"
        self.context_window = context_window
        self.timeout = timeout
        self._count = count_tokens
        self._schema_ok = True
        url = urllib.parse.urlparse(self.base_url)
        if url.scheme not in ("http", "https"):
            raise LLMError(f"the LLM base URL must be http(s)://…, not {self.base_url!r}")
        if self.api_key and url.scheme == "http" and (url.hostname or "") not in _LOOPBACK:
            print(f"warning: the API key goes to {url.hostname} over plain http", file=sys.stderr)

    def count_tokens(self, text: str) -> int:
        if self._count is not None:
            return self._count(text)
        # The server's tokenizer is unknown here: over-count (≈3 characters a token for
        # English under common BPE vocabularies) so the prompt never overflows the window.
        return len(text) // 3 + 1

    def render(self, system: str, user: str) -> str:
        # Chat templates add a few tokens per message: count them as 16.
        return f"{system}\n{user}" + " " * 48

    def chat(self, messages: list[dict[str, str]], max_tokens: int, schema: dict[str, Any] | None = None,
             on_delta: OnToken | None = None, no_repeat: bool = False) -> ChatResult:
        # no_repeat is not sent: the OpenAI API has no DRY sampler, and its frequency and
        # presence penalties did not raise summary ROUGE-L where measured (README@f5760d8 "Summaries").
        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                                "temperature": 0, "stream": True}
        if schema is not None and self._schema_ok:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
        try:
            return self._post(body, on_delta)
        except LLMError as exc:
            if "response_format" in body and " 400" in str(exc):
                self._schema_ok = False
                body.pop("response_format")
                return self._post(body, on_delta)
            raise

    def _post(self, body: dict[str, Any], on_delta: OnToken | None) -> ChatResult:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream, application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(f"{self.base_url}/chat/completions", data=json.dumps(body).encode(),
                                         headers=headers)
        parts: list[str] = []
        usage: dict[str, Any] = {}
        first: float | None = None
        t0 = time.perf_counter()

        def take(event: dict[str, Any]) -> None:
            nonlocal first
            if event.get("error"):
                err = event["error"]
                raise LLMError(f"{self.base_url} reported an error: {err.get('message', err) if isinstance(err, dict) else err}")
            usage.update(event.get("usage") or {})
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content") or (choice.get("message") or {}).get("content") or ""
                if piece:
                    first = first if first is not None else time.perf_counter() - t0
                    parts.append(piece)
                    if on_delta:
                        on_delta(piece)

        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                if "text/event-stream" not in (response.headers.get("Content-Type") or ""):
                    take(json.loads(response.read().decode("utf-8", "replace")))  # a server that does not stream
                else:
                    for raw in response:
                        line = raw.decode("utf-8", "replace").strip()
                        if not line.startswith("data:"):
                            continue
                        payload = line[5:].strip()
                        if payload == "[DONE]":
                            break
                        take(json.loads(payload))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:200].replace("\n", " ")
            raise LLMError(f"{self.base_url} answered HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise LLMError(f"cannot reach the LLM server at {self.base_url}: {getattr(exc, 'reason', exc)}") from exc
        except json.JSONDecodeError as exc:
            raise LLMError(f"{self.base_url} sent something that is not a chat-completions reply: {exc}") from exc
        return ChatResult("".join(parts).strip(), prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0), first_token=first)
