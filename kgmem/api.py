"""`Memory`: the façade users hold — ingest, search, ask, delete, graph, stats."""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

from .config import Config
from .conversations import Conversations, Recalled
from .errors import DiskFullError, NotFoundError, disk_full, full_disk_line
from .graph.knowledge import KnowledgeGraph
from .memory.lock import WriterLock
from .memory.passages import PassageStore, stopwords
from .memory.store import Document
from .overview import Overview, wants_global
from .pipelines.ingest import IngestReport, Progress, ingest, remove_documents
from .pipelines.llm import Backend, make_backend, resolve
from .pipelines.query import Answer, OnToken, Prepared, answer, prepare
from .pipelines.readers import ReaderOptions
from .pipelines.summarize import OnProgress, Summary
from .retrieval import tuning
from .retrieval.search import Searcher
from .retrieval.tuning import FusionTuning
from .retrieval.types import Hit
from .upkeep import Upkeep

log = logging.getLogger("kgmem")


WARM_TEXT = "Who was the first president of the association that published the journal in 1990?"


ENGINES = ("local", "ray")  # where an ingest's compute runs: this process (and its workers), or a Ray cluster


class Memory(Upkeep):
    """A kgmem store on disk: open or create it, then ingest, search and ask.

    A store is a directory: passages and their full-text index in SQLite, vectors in
    FAISS, the knowledge graph in SQLite (held in networkx while open), remembered
    conversations in `conversations/`. Many processes may read it at once; one writes at
    a time (others wait `Config.writer_wait` seconds, then get `StoreLockedError`).

    Args:
        path: The store's directory; created when it does not exist.
        config: Settings for a new store; an existing store keeps the settings that
            decide what is in it (embedder, chunking) and takes the rest from here.
        embedder: An embedder object to use instead of the configured one (tests).
        extractor: A graph extractor to use instead of spaCy's (tests).
        read_only: Open without the right to write (also chosen on a read-only or full disk).

    >>> with Memory("my-store") as mem:                      # doctest: +SKIP
    ...     mem.ingest_paths(["notes/"])
    ...     mem.ingest(["some text", {"id": "a", "title": "A", "text": "..."}])
    ...     mem.search("who founded it?", k=5)
    """

    def __init__(
        self, path: str | Path, config: Config | None = None, *, embedder: Any = None, extractor: Any = None,
        read_only: bool | None = None,
    ):
        """`read_only`: search and ask only, never write (also chosen by itself for a store
        on media this process cannot write); None: decide from the file system."""
        self.path = Path(path)
        self.passages = PassageStore(self.path, config, embedder=embedder, read_only=read_only)
        self.read_only = self.passages.sql.read_only
        self.config = self.passages.config
        self.graph = KnowledgeGraph(
            self.passages.sql, self.config.spacy_model, extractor=extractor, extraction=self.config.graph_extraction
        )
        self.lock = WriterLock(self.path, wait=self.config.writer_wait)
        self._searcher = Searcher(self.passages, self.graph, writing=self.lock.writing)
        self._backends: dict[str, Backend] = {}
        self._backends_lock = threading.Lock()
        self.llm_notice: str | None = None  # set when "auto" found no local LLM (one line for the user)
        self.conversations = Conversations(self)  # remember / recall / forget: turns in a store of their own
        self.overview = Overview(self)  # communities, summaries, questions about a whole text or corpus
        # A writer that stopped between its SQLite commit and its vector save leaves the
        # vector file behind. Repair it now, unless a live writer holds the store (its
        # vectors are simply not saved yet).
        if not self.read_only and self.passages.needs_reconcile() and self.lock.try_acquire():
            try:
                self.passages.reconcile()
            finally:
                self.lock.release()

    # ------------------------------------------------------------------ lifecycle
    def warm(self, background: bool = True, llm: str | Backend | None = None) -> threading.Thread | dict[str, float]:
        """Load what the first question needs — the embedder, the graph walk's matrix,
        BM25's word statistics and, given `llm`, the answering backend — now instead of
        at the first question: in a thread by default (e.g. while a prompt is shown; the
        thread is returned), else here, returning the seconds each part took. Errors are
        left to the first question, which reports them properly."""

        def run() -> dict[str, float]:
            steps: list[tuple[str, Callable[[], object]]] = [
                # A question-sized text: the first matrix products also start BLAS's threads.
                ("embedder", lambda: self.passages.query_embedder.embed([WARM_TEXT])),
            ]
            if self._searcher.graph is not None:
                steps.append(("graph_matrix", self._searcher.graph.matrix))
            steps.append(("word_stats", self.passages.sql.warm_word_stats))
            if self.config.hops:  # the parser that reads a question's hops
                steps.append(("parser", self.graph.parser))
            if llm is not None:
                steps.append(("llm", lambda: self.backend(llm, load=True)))
            took: dict[str, float] = {}
            for name, step in steps:
                t0 = time.perf_counter()
                try:
                    step()
                except Exception as exc:  # noqa: BLE001
                    log.debug("warm-up stopped at %s: %s", name, exc)
                    break
                took[name] = round(time.perf_counter() - t0, 3)
            return took

        if not background:
            return run()
        thread = threading.Thread(target=run, name="kgmem-warm", daemon=True)
        thread.start()
        return thread

    def __enter__(self) -> "Memory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the store's files (also done on leaving a `with` block)."""
        self.conversations.close()
        self.passages.close()

    def configure(self, **changes: Any) -> Config:
        """Change settings that do not decide what is in the store (threads, graph, answering)."""
        from .config import STRUCTURAL

        fixed = sorted(set(changes) & set(STRUCTURAL))
        if fixed:
            raise ValueError(f"{', '.join(fixed)} cannot change on an existing store")
        self.config = self.passages.config = self.config.replace(**changes)
        loaded = self.passages._embedder
        if getattr(loaded, "runtime", None) not in (None, self.config.embedder_runtime) or (
                "embedder_precision" in changes and getattr(loaded, "precision", None) is not None):
            self.passages._embedder = None  # loaded again, with the new runtime or precision, when next needed
        if "graph_extraction" in changes and changes["graph_extraction"] != self.graph.extraction:
            self.graph.extraction, self.graph._extractor = changes["graph_extraction"], None
        if "threads" in changes and self.passages._embedder is not None and self.config.embedder_runtime != "static":
            import torch

            torch.set_num_threads(self.config.threads)
        return self.config

    def use_profile(self, name: str) -> Config:
        """Run with a named profile's settings (config.PROFILES) on this store. A profile
        whose embedder differs from the one the store was built with is refused: its
        vectors would be of another space (`static` needs a store of its own)."""
        from .config import PROFILES, STRUCTURAL
        from .errors import StoreMismatchError

        wanted = Config.profile(name)
        clash = [k for k in STRUCTURAL if getattr(wanted, k) != getattr(self.config, k)]
        if clash or ("static" in (wanted.embedder_runtime, self.config.embedder_runtime)
                     and wanted.embedder_runtime != self.config.embedder_runtime):
            raise StoreMismatchError(
                f"{self.path} was built with the embedder {self.config.embedder} ({self.config.embedder_runtime}); "
                f"profile {name!r} embeds with {wanted.embedder} ({wanted.embedder_runtime}): use a new store for it"
            )
        return self.configure(**{k: v for k, v in PROFILES[name].items() if k not in STRUCTURAL})

    # ------------------------------------------------------------------ writing
    def ingest(
        self,
        items: Iterable[Any] | str | Path | dict,
        *,
        options: ReaderOptions | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        engine: str = "local",
        address: str | None = None,
        workers: int | None = None,
    ) -> IngestReport:
        """Add text (`str`), records ({"id","title","text"}) and files or directories
        (`pathlib.Path`; see `ingest_paths` for path strings).

        A `str` is always text, never opened as a file. Unchanged documents are
        skipped; a changed document with a known id replaces the old one. Inputs that
        cannot be read are listed in `report.failed`.

        `engine="ray"` reads, chunks, embeds and extracts on a Ray cluster (`address`:
        "auto", "HOST:PORT" or "ray://…"; None starts one on this machine) with `workers`
        actors (default: the cluster's CPUs), while this process writes the store as the
        local engine does: the same store from the same input. Needs `kgmem[ray]`.
        """
        if isinstance(items, (str, Path, dict, Document)):
            items = [items]
        if engine not in ENGINES:
            raise ValueError(f"unknown ingest engine {engine!r}; use one of {', '.join(ENGINES)}")
        graph = self.graph if self.config.graph else None
        with self._write_turn():
            self._refresh_for_write()
            if engine == "ray":
                from .pipelines.cluster import ingest_on_ray

                report = ingest_on_ray(self.passages, items, graph=graph, options=options, on_progress=on_progress,
                                       address=address, workers=workers)
            else:
                report = ingest(self.passages, items, graph=graph, options=options, on_progress=on_progress)
            self._after_write()
            report.fusion = self._retune()
            return report

    def _retune(self) -> dict[str, Any] | None:
        """Under the writer lock, after an ingest: measure the rankers on the store's own
        pseudo-questions when it never was, or has grown by half since (retrieval/tuning.py)."""
        if tuning.parse_fusion(self.config.fusion) is not None or self._searcher.graph is None:
            return None
        if not tuning.stale(self.passages.sql, tuning.load(self.passages.sql)):
            return None
        return self._searcher.tune(stopwords=stopwords()).as_dict()

    def fusion(self) -> FusionTuning:
        """How `auto` weighs dense, BM25 and the graph walk on this store: the votes
        measured on its own pseudo-questions, those given in `Config.fusion`, or the fixed ones."""
        return self._searcher.fusion()

    def tune_fusion(self) -> FusionTuning:
        """Measure the rankers on this store's own pseudo-questions now and keep the fusion
        they give (an ingest does this by itself when the store has grown by half)."""
        with self._write_turn():
            self._refresh_for_write()
            return self._searcher.tune(stopwords=stopwords())

    def ingest_paths(
        self,
        paths: Iterable[str | Path] | str | Path,
        *,
        options: ReaderOptions | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        engine: str = "local",
        address: str | None = None,
        workers: int | None = None,
    ) -> IngestReport:
        """Read files and directories (recursively) named by paths; a path that does not
        exist is one line in `report.failed`. `engine`, `address`, `workers`: as for `ingest`
        (with `engine="ray"` every node must read the paths: a shared filesystem)."""
        if isinstance(paths, (str, Path)):
            paths = [paths]
        return self.ingest([Path(p) for p in paths], options=options, on_progress=on_progress, engine=engine,
                           address=address, workers=workers)

    @contextmanager
    def _write_turn(self) -> Iterator[None]:
        """This process's turn to write (the writer lock); a full disk comes out as one
        DiskFullError naming the store (what was committed before is kept)."""
        self.passages.sql.require_writable()
        try:
            with self.lock:
                yield
        except (OSError, sqlite3.Error) as exc:
            if disk_full(exc, self.path):
                raise DiskFullError(full_disk_line(exc, self.path)) from exc
            raise

    def _reload(self) -> None:
        """Take in what other processes committed: their vector file, their graph changes."""
        self.passages.refresh()
        self.graph.refresh()

    def _refresh_for_write(self) -> None:
        """Under the writer lock: take in what other processes committed before writing on
        top of it, then repair a torn write."""
        self._reload()
        if self.passages.needs_reconcile():
            self.passages.reconcile()

    def _after_write(self) -> None:
        """Still under the writer lock: build what readers would otherwise each rebuild
        (the graph walk's matrix), once per write rather than once per batch."""
        if self.config.graph and self._searcher.graph is not None:
            self._searcher.graph.refresh_matrix(budget=self.config.write_memory_mb << 20)
        self.passages.sql.save_word_stats()

    def delete(self, doc_id: str | Iterable[str]) -> int:
        """Delete documents (with their chunks and vectors; a long document with all its
        parts); returns how many chunks went."""
        ids = self.document_ids([doc_id] if isinstance(doc_id, str) else list(doc_id))
        with self._write_turn():
            self._refresh_for_write()
            removed = remove_documents(self.passages, self.graph, ids)
            self.passages.save_vectors()
            self._after_write()
        return len(removed)

    # ------------------------------------------------------------------ conversations
    def remember(self, messages: list[dict[str, Any]], *, conversation: str, user: str | None = None,
                 at: str | datetime | date | None = None, session: str | None = None) -> IngestReport:
        """Store a session's turns ({"speaker" or "role", "text", "id"?, "image_caption"?}),
        said at `at`; relative times in them ("yesterday") are resolved against it. No LLM
        is called. Re-sending a session adds nothing. `report.ids` are the turn ids."""
        return self.conversations.remember(messages, conversation, user=user, at=at, session=session)

    def recall(self, query: str, *, conversation: str | None = None, user: str | None = None, k: int = 10,
               since: str | datetime | date | None = None, until: str | datetime | date | None = None,
               ) -> list[Recalled]:
        """The turns of a conversation (or of a user's conversations) that best match
        `query`, within [since, until]: id, speaker, time, text, resolved dates and the
        turns around each. Documents are never returned."""
        return self.conversations.recall(query, conversation=conversation, user=user, k=k, since=since, until=until)

    def forget(self, *, conversation: str | None = None, user: str | None = None,
               turns: list[str] | None = None) -> int:
        """Delete remembered turns (a conversation's, a user's, or these ids): their text,
        vectors and graph facts. Returns how many turns went."""
        return self.conversations.forget(conversation=conversation, user=user, turns=turns)

    # ------------------------------------------------------------------ reading
    def search(self, query: str, k: int = 10, mode: str = "auto") -> list[Hit]:
        """Rank passages: "auto" (dense + lexical + graph fused; the default), "dense",
        "lexical", "hybrid" (dense + lexical) or "graph" (personalised PageRank)."""
        return self._searcher.search(query, k=k, mode=mode)

    def backend(self, llm: str | Backend | None = None, load: bool = False) -> Backend:
        """The answering backend: a spec ('auto', 'llama[:MODEL|PATH]', 'openai[:MODEL]',
        'extractive') or an object. 'auto' is the local model when it is installed, else
        the no-LLM reader (and `llm_notice` says how to get the model). A local model's
        weights load at its first answer, or here with `load=True`."""
        if llm is not None and not isinstance(llm, str):
            return llm
        spec, notice = resolve(llm or self.config.llm)
        if notice:
            self.llm_notice = notice
        with self._backends_lock:  # two threads asking at once load the model once
            if spec not in self._backends:
                # Lazily: a backend that never embeds (llama) must not load torch.
                passages = self.passages
                self._backends[spec] = make_backend(
                    spec, embed=lambda texts: passages.embedder.embed(texts),
                    count_tokens=lambda t: len(passages.query_embedder.token_offsets([t])[0]),
                    context_window=self.config.context_window, threads=self.config.threads,
                )
            backend = self._backends[spec]
        if load and hasattr(backend, "wait_loaded"):
            backend.wait_loaded()
        return backend

    def ask(
        self,
        question: str,
        k: int | None = None,
        budget: int | None = None,
        llm: str | Backend | None = None,
        *,
        mode: str = "auto",
        on_token: OnToken | None = None,
        on_context: Callable[[Prepared], None] | None = None,
        cancel: threading.Event | None = None,
        conversation: str | None = None,
        user: str | None = None,
        asker: str | None = None,
    ) -> Answer:
        """Answer from memory: retrieve passages and graph facts, pack them into the
        model's window (or `budget` tokens), and let the model write a short answer
        ("G. Stanley Hall [2]"), cited to the sentence it stands in. `on_token` gets the
        answer as it streams; `on_context` the packed context before the model reads it;
        `cancel`, once set (by another thread), stops the model at its next token and
        raises `Cancelled`. With `conversation` (or `user`): answered from remembered turns;
        a question about one speaker (named, or "I" = `asker`) only from that speaker's words.
        `mode="global"` (or, with "auto", a question about the whole memory: "What are the
        main themes?") is answered from community summaries (see `summarize`)."""
        backend = self.backend(llm)
        if conversation is not None or user is not None:  # from what was said, not from documents
            return self.conversations.ask(question, conversation=conversation, user=user, k=k or 10, llm=backend,
                                          budget=budget, on_token=on_token, cancel=cancel, asker=asker)
        if wants_global(question, mode):
            return self.overview.ask(question, llm=backend)
        prepared = self.context(question, k=k, budget=budget, llm=backend, mode=mode)
        if on_context is not None:
            on_context(prepared)
        return answer(prepared, backend, prepared.question or question,
                      answer_tokens=self.config.answer_tokens, on_token=on_token, cancel=cancel)

    def context(
        self, question: str, k: int | None = None, budget: int | None = None, llm: str | Backend | None = None,
        *, mode: str = "auto",
    ) -> Prepared:
        """Retrieve and pack for `question` without calling the LLM (hits, linked entities,
        the packed prompt with its report, timings)."""
        return prepare(
            self._searcher, self.graph, self.backend(llm), question,
            k=k or self.config.search_k, mode=mode, window=budget, answer_tokens=self.config.answer_tokens,
            fact_share=self.config.fact_share, hops=self.config.hops,
            reader=self.backend("extractive") if self.config.hops else None,
        )

    def explain(self, answer: Answer, n: int) -> dict[str, Any]:
        """Why source [n] of an answer was chosen: each retriever's rank for it, and the
        question's entities that lead to it, directly or through a fact."""
        src = answer.context.source(n) if answer.context else None
        if src is None:
            raise NotFoundError(f"the last answer has no source [{n}]")
        hit = next((h for h in answer.passages if h.chunk_id == src.chunk_id), None)
        direct, facts = self.graph.connections([e.entity_id for e in answer.entities], src.chunk_id)
        return {
            "n": n, "doc_id": src.doc_id, "chunk_id": src.chunk_id, "title": src.title,
            "ranks": hit.ranks if hit else {},
            "via_fact_only": not src.packed,
            "question_entities": [e.surface for e in answer.entities],
            "mentions": direct,
            "facts": facts,
        }

    def summarize(self, doc_id: str | Iterable[str] | None = None, *, query: str | None = None, words: int = 150,
                  llm: str | Backend | None = None, on_progress: OnProgress | None = None) -> Summary:
        """A summary of about `words` words of one document (or several; None: the whole
        store), or of what it says about `query`. Every sentence cites its passages [n]
        (`.citations`). With a model: map-reduce over graph-selected sentences; with
        `llm="extractive"` (or none installed): the selected sentences themselves."""
        return self.overview.summarize(doc_id if doc_id is None or isinstance(doc_id, str) else list(doc_id),
                                       query=query, words=words, llm=llm, on_progress=on_progress)

    def communities(self, level: int | None = None, doc_id: str | None = None) -> list[Any]:
        """Communities of passages and entities (level 0: inside a document; 1: across
        documents), largest first; reclustered first where documents changed."""
        return self.overview.communities(level, [doc_id] if doc_id else None)

    def search_modes(self) -> list[str]:
        """The ranking modes `search` and `ask` take (`auto`, `dense`, `lexical`, …)."""
        from .retrieval.search import MODES

        return list(MODES)

    def documents(self, limit: int | None = 50, offset: int = 0, prefix: str = "") -> list[dict[str, Any]]:
        """What the store holds, in id order (no text): id, title, source, chars, chunks,
        added_at, and part_of/part for the parts of a long document."""
        return self.passages.sql.list_documents(limit=limit, offset=offset, prefix=prefix)

    def document_ids(self, ids: list[str]) -> list[str]:
        """The stored documents these ids name, a long document's id naming all its parts;
        NotFoundError for an id that names none."""
        known = self.passages.sql.document_hashes(ids)
        parts = self.passages.sql.parts_of(i for i in ids if i not in known)
        missing = [i for i in ids if i not in known and i not in parts]
        if missing:
            raise NotFoundError(f"no document with id {missing[0]!r}")
        return [i for i in ids if i in known] + [p for whole in parts.values() for p in whole]

    def get(self, doc_id: str) -> Document | None:
        """The stored document with this id (text, title, source, meta), or None."""
        return self.passages.sql.get_document(doc_id)

    def stats(self) -> dict[str, Any]:
        """Counts (documents, chunks, vectors, entities, facts), the vector index's layout,
        the embedder's runtime and the graph extraction: what `kgmem stats` prints."""
        counts = self.passages.sql.counts()
        counts.update(self.graph.counts())
        counts["vectors"] = len(self.passages.vectors)
        counts["vector_index"] = self.passages.vectors.kind  # "flat" (exact) or "ivf"
        counts["embedder"] = self.config.embedder
        counts["embedder_runtime"] = self.config.embedder_runtime
        counts["graph_extraction"] = self.config.graph_extraction
        counts["fusion"] = self.fusion().as_dict()
        counts["path"] = str(self.path)
        return counts
