"""Worker processes for ingest: each loads the embedder and spaCy once, with one thread,
and turns batches of documents into chunks, vectors and facts.

They pay where there are more cores than torch uses well. On 2 cores they do not with
MiniLM: torch already uses both, and starting the workers costs ~7 s. With the static
embedder spaCy is the bound and runs on one core, so there they do (1.7x; README@f5760d8
"Profiles"), and Config.ingest_workers() starts them by itself. SQLite and FAISS writes
stay in the parent, so there is still one writer.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from typing import Any

from ..config import Config
from ..memory.store import Document
from .prepare import bound_allocations, prepare_batch, release_memory

_STATE: dict[str, Any] = {}


def _init(config_json: str, graph: bool) -> None:
    import json

    os.environ["KGMEM_THREADS"] = "1"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import faiss
    import torch

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    from ..graph.extract import make_extractor
    from ..memory.embedders import make_embedder

    cfg = Config.from_dict(json.loads(config_json)).replace(threads=1)
    bound_allocations(cfg.malloc_mmap_mb)
    _STATE["config"] = cfg
    _STATE["embedder"] = make_embedder(cfg.embedder, cfg.embedder_runtime, batch_size=cfg.embed_batch_size, threads=1,
                                       precision=cfg.embedder_precision)
    _STATE["extractor"] = make_extractor(cfg.spacy_model, cfg.graph_extraction) if graph else None


def _prepare(docs: list[Document]) -> Any:
    try:
        return prepare_batch(docs, _STATE["embedder"], _STATE["extractor"], _STATE["config"])
    finally:
        release_memory()


class WorkerPool:
    def __init__(self, config: Config, graph: bool, start: bool = True):
        self.size = max(1, int(config.workers))
        self._args = (config.to_json(), graph)
        self._pool: Any = None
        if start:
            self._start()

    @classmethod
    def lazy(cls, config: Config, graph: bool) -> "WorkerPool":
        """A pool whose processes start with the first submitted batch."""
        return cls(config, graph, start=False)

    def _start(self) -> None:
        # spawn, not fork: torch's thread pools do not survive a fork.
        self._pool = mp.get_context("spawn").Pool(self.size, initializer=_init, initargs=self._args)

    def split(self, docs: list[Document]) -> list[list[Document]]:
        n = min(self.size, len(docs))
        step = -(-len(docs) // n)
        return [docs[i : i + step] for i in range(0, len(docs), step)]

    def submit(self, docs: list[Document]) -> Any:
        if self._pool is None:
            self._start()
        return self._pool.apply_async(_prepare, (docs,))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
