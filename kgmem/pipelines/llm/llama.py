"""`llama`: a GGUF model run inside this process by llama.cpp (the xllamacpp wheel).

No server process and no compile. Output is constrained by the answer's JSON schema
(llama.cpp turns it into a grammar); the fixed system prompt stays in llama.cpp's
prompt cache between questions. One request runs at a time per model: threads that
ask through one Memory queue at the model. The tokenizer used to count the packed
prompt is the model's own, converted from the GGUF once and cached.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from ...errors import Cancelled
from ...memory.offline import offline
from .base import ChatBackend, ChatResult, LLMError, OnToken
from .models import DEFAULT_MODEL, INSTALL_HINT, MODELS, cache_dir, model_file

# chat(no_repeat=True): llama.cpp's DRY sampler ("don't repeat yourself") with its
# authors' suggested settings; a phrase the prompt or reply already holds costs more the
# longer the repeat grows. On QMSum's whole-meeting summaries it stopped Qwen2.5-1.5B's
# loops and raised ROUGE-L (README@f5760d8 "Summaries"); frequency/presence penalties did not.
NO_REPEAT = {"dry_multiplier": 0.8, "dry_base": 1.75, "dry_allowed_length": 2}


def _tokenizer(path: Path) -> Any:
    """The model's tokenizer (with its chat template), converted from the GGUF on first use."""
    with offline():
        return _load_tokenizer(path)


def _saved(path: Path) -> Path:
    """Where the tokenizer converted from this GGUF file is kept."""
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir() / "tokenizers" / key


def _load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    saved = _saved(path)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if (saved / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(str(saved))
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    tmp = saved.with_name(f"{saved.name}.{os.getpid()}.tmp")
    tok.save_pretrained(str(tmp))
    try:
        tmp.rename(saved)
    except OSError:  # another process saved it first
        pass
    return tok


class SavedTokenizer:
    """The converted tokenizer read without transformers: the Rust tokenizer and the chat
    template (jinja2, as transformers renders it). Counting a packed prompt needs only
    this, so a question is packed before llama.cpp has loaded the weights (importing
    transformers alone took ~1.5 s of a cold start)."""

    def __init__(self, saved: Path):
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        from tokenizers import Tokenizer

        self.backend = Tokenizer.from_file(str(saved / "tokenizer.json"))
        config = json.loads((saved / "tokenizer_config.json").read_text(encoding="utf-8"))
        self.specials = {k: v for k, v in config.items() if k.endswith("_token") and isinstance(v, str)}
        template = saved / "chat_template.jinja"
        self.chat_template = template.read_text(encoding="utf-8") if template.is_file() else None
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, ensure_ascii=False, indent=indent)
        env.globals["raise_exception"] = _raise
        self._template = env.from_string(self.chat_template) if self.chat_template else None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, path: Path) -> "SavedTokenizer | None":
        saved = _saved(path)
        if not all((saved / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
            return None  # not converted yet: the first load does it with transformers
        try:
            return cls(saved)
        except Exception:  # noqa: BLE001 - an unreadable cache falls back to transformers
            return None

    def count(self, text: str) -> int:
        with self._lock:
            return len(self.backend.encode(text, add_special_tokens=False).ids)

    def head(self, text: str, tokens: int) -> str:
        with self._lock:
            return self.backend.decode(self.backend.encode(text, add_special_tokens=False).ids[:tokens])

    def render(self, messages: list[dict[str, str]]) -> str:
        assert self._template is not None
        return self._template.render(messages=messages, add_generation_prompt=True, **self.specials)


def _raise(message: str) -> None:
    raise LLMError(f"chat template: {message}")


class LlamaBackend(ChatBackend):
    # llama.cpp's CPU "repack" keeps a second, re-laid-out copy of the weights.
    # Measured here: without it, answers ~17% faster (8.5 vs 10.2 s at 1,024 tokens) and
    # 600 MB less resident memory (2.05 vs 2.65 GB), so it is off.
    repack = False
    prefills = True  # the answer step hands the model its reply's opening (base.ANSWER_PREFIX)
    # llama.cpp's server keeps the state of each prompt its slot leaves in RAM, up to 8 GiB
    # by default: ~28 MB a question for this model, so a REPL or server grew by gigabytes
    # (README@f5760d8, "llama.cpp's RAM prompt cache"). Its slot's own cache is what repeats use.
    cache_ram_mb = 256

    def __init__(self, model: str | None = None, context_window: int = 2048, threads: int | None = None):
        try:
            import xllamacpp
        except ImportError as exc:
            raise LLMError(f"the llama backend needs the xllamacpp package: {INSTALL_HINT}") from exc
        model = model or os.environ.get("KGMEM_LLM_MODEL") or DEFAULT_MODEL
        self.path = model_file(model)
        self.model = model if model in MODELS else self.path.name
        self.name = f"llama:{self.model}"
        self.context_window = context_window
        threads = max(1, int(threads or os.cpu_count() or 1))
        # Counting tokens needs only the saved tokenizer: a question is packed before the
        # weights are loaded. llama.cpp loads them at the first chat (or `wait_loaded`,
        # which `Memory.warm` calls); its loader holds the GIL, so it cannot overlap
        # with packing in another thread anyway.
        saved = SavedTokenizer.of(self.path)
        self.tokenizer: Any = saved if saved is not None else _tokenizer(self.path)
        params = xllamacpp.CommonParams()
        params.model.path = str(self.path)
        params.n_ctx = max(context_window, 4096)  # room for larger --budget values
        self.max_window = params.n_ctx  # what one call may hold (summaries use it all)
        params.n_parallel = 1
        params.n_batch = min(512, context_window)
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.warmup = False
        params.cache_prompt = True
        params.cache_ram_mib = self.cache_ram_mb
        params.verbosity = -1
        params.no_extra_bufts = not self.repack
        self._params = params
        self._server: Any = None
        self.load_seconds: float | None = None
        self._load_lock = threading.Lock()
        self._lock = threading.Lock()

    def wait_loaded(self) -> float:
        """Load the model into llama.cpp now, if it is not yet; the seconds loading took."""
        with self._load_lock:
            if self._server is None:
                import xllamacpp

                t0 = time.perf_counter()
                try:
                    self._server = xllamacpp.Server(self._params)
                except Exception as exc:
                    raise LLMError(f"llama.cpp could not load {self.path}: {exc}") from exc
                self.load_seconds = time.perf_counter() - t0
        assert self.load_seconds is not None
        return self.load_seconds

    def count_tokens(self, text: str) -> int:
        if isinstance(self.tokenizer, SavedTokenizer):
            return self.tokenizer.count(text)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def head(self, text: str, tokens: int) -> str:
        """The start of `text` that fits in `tokens` of the model's tokens."""
        if isinstance(self.tokenizer, SavedTokenizer):
            return self.tokenizer.head(text, tokens)
        return self.tokenizer.decode(self.tokenizer(text, add_special_tokens=False)["input_ids"][:tokens])

    def render(self, system: str, user: str) -> str:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        if isinstance(self.tokenizer, SavedTokenizer) and self.tokenizer.chat_template:
            return self.tokenizer.render(messages)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"{system}\n\n{user}\n"

    def chat(self, messages: list[dict[str, str]], max_tokens: int, schema: dict[str, Any] | None = None,
             on_delta: OnToken | None = None, no_repeat: bool = False, grammar: str | None = None) -> ChatResult:
        # A last assistant message is continued: llama.cpp's prefill_assistant (on by default).
        request: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens, "temperature": 0,
                                   "stream": True, "cache_prompt": True}
        if no_repeat:
            request.update(NO_REPEAT, dry_penalty_last_n=max(self.max_window, self.context_window))
        if schema is not None:
            request["response_format"] = {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
        elif grammar is not None:
            request["grammar"] = grammar
        self.wait_loaded()
        parts: list[str] = []
        stats: dict[str, Any] = {}
        cancel = threading.Event()
        done = threading.Event()
        errors: list[str] = []
        stopped: list[bool] = []
        t0 = time.perf_counter()

        def on_chunk(chunk: Any) -> bool:
            if isinstance(chunk, dict):
                if "error" in chunk:
                    errors.append(str(chunk["error"].get("message", chunk["error"]) if isinstance(chunk["error"], dict)
                                      else chunk["error"]))
                    return True
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content") or ""
                    if piece:
                        if "first" not in stats:
                            stats["first"] = time.perf_counter() - t0
                        parts.append(piece)
                        if on_delta is not None:
                            try:
                                on_delta(piece)
                            except Cancelled:  # the caller left: stop here, and say so
                                stopped.append(True)
                                return True
                            except Exception as exc:  # a caller's printer failing must not hang the model
                                errors.append(f"streaming callback failed: {exc}")
                                return True
                if "timings" in chunk:
                    stats["timings"] = chunk["timings"]
                if "usage" in chunk:
                    stats["usage"] = chunk["usage"]
            return cancel.is_set()  # True stops generation

        def run() -> None:
            try:
                with self._lock:
                    self._server.handle_chat_completions(request, on_chunk)
            except Exception as exc:
                errors.append(str(exc))
            finally:
                done.set()

        worker = threading.Thread(target=run, name="kgmem-llama", daemon=True)
        worker.start()
        try:
            while not done.wait(0.05):
                pass
        except KeyboardInterrupt:
            cancel.set()  # generation stops at its next token; the caller gets the interrupt now
            raise
        if stopped:
            raise Cancelled("the answer was stopped: its caller left")
        if errors:
            raise LLMError(f"llama.cpp failed: {errors[0]}")
        timings, usage = stats.get("timings") or {}, stats.get("usage") or {}
        cached = int(timings.get("cache_n") or 0)
        prompt = int(usage.get("prompt_tokens") or (timings.get("prompt_n", 0) + cached))
        return ChatResult("".join(parts), prompt_tokens=prompt, cached_tokens=cached,
                          completion_tokens=int(usage.get("completion_tokens") or timings.get("predicted_n") or 0),
                          first_token=stats.get("first"))
