"""Backends by name: 'auto' | 'llama[:MODEL or PATH.gguf]' | 'openai[:MODEL]' | 'extractive'."""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .base import LLMError
from .models import DEFAULT_MODEL, INSTALL_HINT, installed

BACKENDS = ("auto", "llama", "openai", "extractive")


def resolve(spec: str | None) -> tuple[str, str | None]:
    """The concrete backend for a spec, and a one-line notice when 'auto' had to fall back."""
    spec = (spec or "auto").strip()
    if spec != "auto":
        return spec, None
    if os.environ.get("KGMEM_LLM_MODEL") or installed(DEFAULT_MODEL):
        try:
            import xllamacpp  # noqa: F401
        except ImportError:
            return "extractive", f"no local LLM (xllamacpp is missing): answering without one; {INSTALL_HINT}"
        return "llama", None
    return "extractive", (f"no local LLM installed: short answers come from the no-LLM reader; "
                          f"for the model {DEFAULT_MODEL}, {INSTALL_HINT}")


# Each backend's default context window, chosen by measurement (README@f5760d8 "Answers"): the
# in-process model reads ~95 prompt tokens/s on 2 cores, so its window is what the user
# waits for. The no-LLM reader also reads best from 1,024 (more passages, more wrong candidates).
WINDOWS = {"extractive": 1024, "llama": 1024, "local": 1024, "openai": 4096}


def make_backend(spec: str, *, embed: Callable[[list[str]], np.ndarray] | None = None,
                 count_tokens: Callable[[str], int] | None = None, context_window: int | None = None,
                 threads: int | None = None) -> Any:
    """A backend by name; `context_window` 0/None: the backend's own default (WINDOWS).
    The no-LLM reader reads with the store's embedder and token counter (`embed`,
    `count_tokens`); a model counts its own tokens and needs neither."""
    kind, _, arg = resolve(spec)[0].partition(":")
    window = context_window or WINDOWS.get(kind, 2048)
    if kind == "extractive":
        from .extractive import ExtractiveBackend

        if embed is None or count_tokens is None:
            raise LLMError("the extractive reader needs the store's embedder: make_backend('extractive', "
                           "embed=..., count_tokens=...), or Memory.backend('extractive')")

        return ExtractiveBackend(embed, count_tokens, window)
    if kind in ("llama", "local"):  # 'local' was the transformers backend; llama.cpp replaced it
        from .llama import LlamaBackend

        return LlamaBackend(arg or None, window, threads)
    if kind == "openai":
        from .openai import OpenAIBackend

        return OpenAIBackend(model=arg or None, context_window=window)
    raise LLMError(f"unknown LLM backend {spec!r}; use auto, llama[:MODEL|PATH.gguf], openai[:MODEL] or extractive")
