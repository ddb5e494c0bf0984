"""The external store: SQLite text + FAISS vectors behind one object, kept in agreement."""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..config import ANSWERING, RUNTIME, STRUCTURAL, Config
from ..errors import StoreMismatchError, disk_full
from .chunker import chunk_text
from .embedders import Embedder, loaded_embedder, query_encoder, shared_embedder
from .store import Chunk, Document, NewChunk, SQLiteStore
from .structure import MARKDOWN, PATH_SEPARATOR, headings_at, markdown_structure
from .vectors import IndexSettings, VectorIndex

log = logging.getLogger("kgmem")


def content_hash(title: str, text: str) -> str:
    return hashlib.sha256((title + "\x00" + text).encode("utf-8", "surrogatepass")).hexdigest()


def embedding_text(title: str, text: str, heading: str = "") -> str:
    """What the embedder sees for a chunk: its document's title and section heading path,
    then the chunk.

    They give later chunks of a long document the context its first one has.
    """
    head = embedding_head(title, heading)
    return f"{head}\n{text}" if head else text


def embedding_head(title: str, heading: str = "") -> str:
    """The line a chunk is embedded behind: "title › heading path" (either may be empty)."""
    return PATH_SEPARATOR.join(p for p in (title, heading) if p)


def chunk_document(doc: Document, embedder: Embedder, config: Config) -> list[NewChunk]:
    """A document's chunks, sized by the embedder's tokenizer."""
    limit = min(config.chunk_tokens, embedder.max_tokens)
    if doc.meta.get("format") != MARKDOWN:
        return chunk_text(doc.text, embedder.token_offsets, _room(limit, doc.title, embedder), config.chunk_overlap)
    # Markdown (and HTML, read as Markdown): chunks stay inside their section.
    chunks: list[NewChunk] = []
    for sec in markdown_structure(doc.text).sections:
        heading = sec.heading(doc.title)
        room = _room(limit, embedding_head(doc.title, heading), embedder)
        for ch in chunk_text(doc.text[sec.start : sec.end], embedder.token_offsets, room, config.chunk_overlap):
            chunks.append(NewChunk(ord=len(chunks), start=sec.start + ch.start, end=sec.start + ch.end,
                                   text=ch.text, n_tokens=ch.n_tokens, heading=heading))
    return chunks


def _room(limit: int, head: str, embedder: Embedder) -> int:
    """Tokens left for a chunk embedded behind `head` (which takes at most a third)."""
    if not head:
        return limit
    head_tokens = len(embedder.token_offsets([head])[0])
    return max(limit - min(head_tokens, limit // 3), 16)


class PassageStore:
    """Documents, chunks, FTS5 and FAISS in one directory, with the embedder that built them."""

    def __init__(
        self,
        directory: str | Path,
        config: Config | None = None,
        embedder: Embedder | None = None,
        read_only: bool | None = None,
    ):
        self.directory = Path(directory)
        self.sql = SQLiteStore(self.directory, read_only=read_only)
        self.config = self._settle_config(config)
        self._embedder = embedder
        self._query_embedder: Embedder | None = None
        self.vectors = VectorIndex(
            self.directory, self.config.embedding_dim,
            IndexSettings(ann_threshold=self.config.ann_threshold, nprobe=self.config.ann_nprobe,
                          fold_bytes=self.config.write_memory_mb << 20),
        )

    # ------------------------------------------------------------------ config
    def _settle_config(self, asked: Config | None) -> Config:
        stored = self.sql.get_meta("config")
        if stored is None:
            self.sql.require_writable()
            config = asked or Config()
            self.sql.set_meta("config", config.to_json())
            return config
        import json

        on_disk = Config.from_dict(json.loads(stored))
        if asked is not None:
            for name in STRUCTURAL:
                if getattr(asked, name) != getattr(on_disk, name):
                    raise StoreMismatchError(
                        f"{self.directory} was built with {name}={getattr(on_disk, name)!r}, "
                        f"not {getattr(asked, name)!r}; open it without that setting or use a new store"
                    )
            # Non-structural settings (threads, batch sizes, answering) follow the caller.
            return asked
        # Runtime-only settings come from this process, not from whoever built the store.
        here = Config()
        return on_disk.replace(**{name: getattr(here, name) for name in RUNTIME + ANSWERING})

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = shared_embedder(
                self.config.embedder, batch_size=self.config.embed_batch_size, threads=self.config.threads,
                runtime=self.config.embedder_runtime, precision=self.config.embedder_precision,
            )
        emb = self._embedder
        if emb.dim != self.config.embedding_dim:
            raise StoreMismatchError(
                f"embedder {emb.name!r} makes {emb.dim}-d vectors but the store holds "
                f"{self.config.embedding_dim}-d ones"
            )
        return emb

    @property
    def query_embedder(self) -> Embedder:
        """What embeds questions. The embedder itself when it was given or is loaded in this
        process; else, for the default torch runtime, the same model run in NumPy (same
        vectors to ~1e-7, no torch import: a process that only asks never loads torch)."""
        if self._embedder is not None:
            return self._embedder
        if self.config.embedder_runtime == "torch":
            loaded = loaded_embedder(self.config.embedder, "torch")
            if loaded is not None:
                return loaded
            if self._query_embedder is None:
                self._query_embedder = query_encoder(self.config.embedder)
            if self._query_embedder is not None and self._query_embedder.dim == self.config.embedding_dim:
                return self._query_embedder
        return self.embedder

    # ------------------------------------------------------------------ writing
    def embed_chunks(self, pairs: Sequence[tuple[str, ...]]) -> np.ndarray:
        """Vectors for (title, chunk text[, heading path]) chunks."""
        return self.embedder.embed([embedding_text(*p) for p in pairs])

    def _embedding_inputs(self, chunks: Sequence[Chunk]) -> list[tuple[str, str, str]]:
        """(title, text, heading) of stored chunks, each heading found again in its document."""
        headings: dict[int, str] = {}
        by_doc: dict[str, list[Chunk]] = {}
        for c in chunks:
            by_doc.setdefault(c.doc_id, []).append(c)
        for doc_id, cs in by_doc.items():
            doc = self.sql.get_document(doc_id)
            if doc is not None and doc.meta.get("format") == MARKDOWN:
                headings.update(zip((c.id for c in cs), headings_at(doc.text, doc.title, [c.start for c in cs])))
        return [(c.title, c.text, headings.get(c.id, "")) for c in chunks]

    def delete(
        self, doc_ids: Sequence[str], before: Callable[[Sequence[str]], None] | None = None
    ) -> list[int]:
        """Remove documents, their chunks, FTS rows and vectors. Returns removed chunk ids.

        `before` runs inside the same transaction, ahead of the chunk rows going
        (the graph layer removes the facts that hang off them there).
        """
        with self.sql.transaction():
            if before is not None:
                before(doc_ids)
            removed = self.sql.delete_documents(doc_ids)
            gen = self.sql.bump_generation() if removed else None
        if gen is not None:
            self.vectors.remove(removed)
            self.vectors.generation = gen
        return removed

    def save_vectors(self, fold: bool | None = None) -> None:
        """Commit the vector log; `fold`: also fold it into the index file (None: while
        the two fit `write_memory_mb`)."""
        if self.vectors.dirty:
            self.vectors.save(fold)

    # ------------------------------------------------------------------ recovery
    def refresh(self) -> None:
        """Take in the vector file another process saved since ours was read."""
        self.vectors.maybe_reload()

    def needs_reconcile(self) -> bool:
        """A torn write to mend (a damaged vector file waits for an explicit repair)."""
        return not self.vectors.damaged and self.vectors.generation != self.sql.generation

    def reconcile(self, progress: Callable[[int, int], None] | None = None, quiet: bool = False) -> dict[str, int]:
        """Make FAISS hold exactly one vector per chunk: drop strays, embed the missing.
        A damaged vector file is started again from empty: every chunk is re-embedded.
        `quiet`: no warning (a backup drops the vectors of chunks committed after its copy)."""
        if self.vectors.damaged:
            log.warning("%s", self.vectors.damaged)
            self.vectors.reset()
        have = set(self.vectors.ids().tolist())
        want = set(self.sql.chunk_ids())
        stray = sorted(have - want)
        missing = sorted(want - have)
        if stray:
            self.vectors.remove(stray)
        done = 0
        for chunks in self.sql.iter_chunks(missing, batch=max(self.config.embed_batch_size * 4, 64)):
            vecs = self.embed_chunks(self._embedding_inputs(chunks))
            self.vectors.add([c.id for c in chunks], vecs)
            done += len(chunks)
            if progress:
                progress(done, len(missing))
        self.vectors.generation = self.sql.generation
        self.vectors.save(fold=True)  # every vector is in memory by now
        if (stray or missing) and not quiet:
            log.warning("vectors reconciled with SQLite: %d stray removed, %d re-embedded", len(stray), len(missing))
        return {"stray_removed": len(stray), "re_embedded": len(missing)}

    # ------------------------------------------------------------------ reading
    def dense_search(self, queries: Sequence[str], k: int) -> list[list[tuple[int, float]]]:
        if not queries:
            return []
        qv = self.query_embedder.embed(list(queries))
        return self.dense_search_vectors(qv, k)

    def dense_search_vectors(self, qv: np.ndarray, k: int,
                             within: Sequence[int] | None = None) -> list[list[tuple[int, float]]]:
        self.vectors.maybe_reload()  # another process may have added vectors since
        scores, ids = self.vectors.search(qv, k, within=within)
        return [
            [(int(i), float(s)) for s, i in zip(srow, irow) if i >= 0]
            for srow, irow in zip(scores, ids)
        ]

    def lexical_search(self, query: str, k: int, within: Sequence[int] | None = None) -> list[tuple[int, float]]:
        return self.sql.lexical_search(query, k, stopwords=stopwords(), within=within)

    def chunks(self, ids: Sequence[int]) -> dict[int, Chunk]:
        return self.sql.chunks(ids)

    def check(self, vectors: bool = True) -> list[str]:
        """Problems between documents, chunks, FTS and (with `vectors`) FAISS."""
        problems = self.sql.check()
        if self.vectors.damaged:
            return problems + [self.vectors.damaged]
        if not vectors:
            return problems
        have = self.vectors.ids()
        want = set(self.sql.chunk_ids())
        have_set = set(have.tolist())
        if len(have_set) != len(have):
            problems.append(f"{len(have) - len(have_set)} duplicate vector ids")
        if have_set - want:
            problems.append(f"{len(have_set - want)} vectors have no chunk")
        if want - have_set:
            problems.append(f"{len(want - have_set)} chunks have no vector")
        return problems

    def close(self) -> None:
        try:
            self.save_vectors()
        except OSError as exc:
            if not disk_full(exc):
                raise
            # after a write that failed on a full disk: the next open reconciles (re-embeds)
            log.warning("vectors not saved, the disk is full (%s): the next open mends them", exc)
        finally:
            self.sql.close()


_STOP: frozenset[str] | None = None


def stopwords() -> frozenset[str]:
    # spaCy's English list: question words ("who", "which") carry no lexical signal.
    # Read from its file: `import spacy` alone takes ~1.5 s, which a process that only
    # asks would pay at its first question (the list is a plain module of strings).
    global _STOP
    if _STOP is None:
        _STOP = frozenset(_spacy_stop_words())
    return _STOP


def _spacy_stop_words() -> set[str]:
    import importlib.util
    import sys

    if "spacy" not in sys.modules:
        spec = importlib.util.find_spec("spacy")
        if spec is not None and spec.submodule_search_locations:
            source = Path(next(iter(spec.submodule_search_locations))) / "lang" / "en" / "stop_words.py"
            if source.is_file():
                namespace: dict[str, object] = {}
                exec(compile(source.read_text(encoding="utf-8"), str(source), "exec"), namespace)
                words = namespace.get("STOP_WORDS")
                if isinstance(words, set):
                    return words
    from spacy.lang.en.stop_words import STOP_WORDS

    return set(STOP_WORDS)
