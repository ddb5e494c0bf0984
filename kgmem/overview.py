"""The whole-text side of `Memory`: communities, summaries and global questions.

A global question ("What were the main decisions?", "What themes run through these
reports?") is answered from community summaries, GraphRAG's route without its LLM at
ingest: the communities most worth reading (by size and by nearness to the question)
are each summarised once — the summary cached under the community's key, so it is
reused until its passages change — and the model answers from those summaries, citing
the passages behind them.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .graph.communities import Communities, Community, UpdateReport
from .pipelines.llm.base import ChatBackend
from .pipelines.query import Answer, AnswerCitation
from .pipelines.summarize import SYSTEM, OnProgress, Summarizer, Summary, cite_sentences
from .retrieval.packer import ContextReport
from .retrieval.types import Hit

if TYPE_CHECKING:
    from .api import Memory

GLOBAL = re.compile(
    r"\b(summar(?:y|ies|ise|ize|ising|izing)|overview|gist|recap"
    r"|(?:main|key|major|central|common|recurring) (?:points?|topics?|themes?|decisions?|ideas?|issues?|findings?"
    r"|takeaways?|conclusions?|outcomes?)"
    r"|what (?:is|was|are|were) (?:this|these|the|all) (?:meetings?|documents?|texts?|corpus|books?|reports?"
    r"|discussions?|notes?|papers?|articles?)(?: \w+)? about"
    r"|themes? (?:run|running|that run)|(?:all|whole|entire) (?:corpus|collection|store|memory))\b",
    re.I,
)
COMMUNITY_WORDS = 60  # each community's cached summary
GLOBAL_COMMUNITIES = 5


def is_global(question: str) -> bool:
    """Does the question ask about a whole document or corpus, not one fact?"""
    return bool(GLOBAL.search(question))


def wants_global(question: str, mode: str) -> bool:
    """Is this ask answered from community summaries: `mode="global"`, or "auto" and a
    question about the whole memory?"""
    return mode == "global" or (mode == "auto" and is_global(question))


class Overview:
    def __init__(self, memory: "Memory"):
        self.memory = memory
        self._communities: Communities | None = None

    @property
    def store(self) -> Communities:
        if self._communities is None:
            self._communities = Communities(self.memory.passages.sql)
        return self._communities

    def update(self, progress: Callable[[int, int], None] | None = None) -> UpdateReport:
        """Recluster the documents added or changed since the last time (writer lock held
        meanwhile); nothing to do costs one read of the documents' hashes."""
        mem = self.memory
        mem._reload()
        changed, corpus = self.store.stale()
        if not (changed or corpus):
            counts = self.store.counts()
            return UpdateReport(0, counts["communities"], counts["topics"])
        mem.passages.sql.require_writable()
        with mem.lock:
            return self.store.update(progress)

    def communities(self, level: int | None = None, doc_ids: Sequence[str] | None = None) -> list[Community]:
        self.update()
        return self.store.list(level=level, doc_ids=doc_ids)

    def _scope(self, doc_id: str | Sequence[str] | None) -> list[str] | None:
        if doc_id is None:
            return None
        return self.memory.document_ids([doc_id] if isinstance(doc_id, str) else list(doc_id))

    def summarize(self, doc_id: str | Sequence[str] | None = None, *, query: str | None = None, words: int = 150,
                  llm: Any = None, read_words: int | None = None, on_progress: OnProgress | None = None) -> Summary:
        if words < 10:
            raise ValueError("a summary needs at least 10 words")
        scope = self._scope(doc_id)
        self.update()
        backend = self.memory.backend(llm)
        return Summarizer(self.memory.passages, self.memory.graph, self.store).summarize(
            scope, query.strip() if query else None, words, backend, read_words, on_progress)

    # ------------------------------------------------------------------ global questions
    def community_summary(self, community: Community, backend: Any) -> tuple[str, list[int], bool]:
        """(text with local [n], the chunk id of each n, whether it came from the cache)."""
        name = getattr(backend, "name", "extractive") if isinstance(backend, ChatBackend) else "extractive"
        hit = self.store.cached(community.key, name, COMMUNITY_WORDS)
        if hit is not None:
            return hit[0], hit[1], True
        s = Summarizer(self.memory.passages, self.memory.graph, self.store).summarize(
            None, None, COMMUNITY_WORDS, backend, community=community)
        chunks = [0] * max((c.n for c in s.citations), default=0)
        for c in s.citations:
            chunks[c.n - 1] = c.chunk_id
        lock = self.memory.lock
        if not self.memory.read_only and lock.try_acquire():  # a busy writer: not cached this time
            try:
                self.store.cache(community.key, name, COMMUNITY_WORDS, s.text, chunks)
            finally:
                lock.release()
        return s.text, chunks, False

    def chosen(self, question: str, limit: int = GLOBAL_COMMUNITIES) -> list[Community]:
        """The communities a global question reads: big ones, and those near the question."""
        topics = self.communities(level=1)
        comms = topics if len(topics) >= 3 else self.store.list(level=0)
        if not comms:
            return []
        passages = self.memory.passages
        qv = passages.query_embedder.embed([question])[0]
        total = sum(c.size for c in comms) or 1

        def score(c: Community) -> float:
            vecs = passages.vectors.vectors(np.asarray(c.chunks[:50], dtype=np.int64))
            centre = vecs.mean(axis=0) if len(vecs) else np.zeros_like(qv)
            near = float(centre @ qv / (np.linalg.norm(centre) or 1.0))
            return (c.size / total) ** 0.5 * (1.0 + max(near, 0.0)) ** 2

        return sorted(comms, key=score, reverse=True)[:limit]

    def ask(self, question: str, llm: Any = None, words: int = 120) -> Answer:
        t0 = time.perf_counter()
        backend = self.memory.backend(llm)
        comms = self.chosen(question)
        numbers: dict[int, int] = {}
        parts, cached = [], 0
        for comm in comms:
            text, chunks, was = self.community_summary(comm, backend)
            cached += was

            def renumber(m: re.Match, chunks: list[int] = chunks) -> str:
                n = int(m.group(1))
                if not 1 <= n <= len(chunks) or not chunks[n - 1]:
                    return ""
                return f"[{numbers.setdefault(chunks[n - 1], len(numbers) + 1)}]"

            parts.append((comm, re.sub(r"\[(\d+)\]", renumber, text)))
        t_parts = time.perf_counter() - t0
        found = self.memory.passages.chunks(list(numbers))
        bags = {n: found[c].text for c, n in numbers.items() if c in found}
        if isinstance(backend, ChatBackend) and parts:
            notes = "\n".join(f"Topic {i + 1} ({', '.join(c.top[:4])}): {t}" for i, (c, t) in enumerate(parts))
            prompt = (f"Summaries of the topics in memory:\n{notes}\n\nQuestion: {question}\n"
                      f"Answer the question from these summaries in about {words} words, keeping their [n] citations.")
            result = backend.chat([{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
                                  int(words * 1.6) + 40, no_repeat=True)
            text, tokens = cite_sentences(result.text, bags), result.prompt_tokens
        else:
            text, tokens = " ".join(t for _, t in parts), 0
        cited = sorted({int(n) for n in re.findall(r"\[(\d+)\]", text)})
        by_n = {n: c for c, n in numbers.items()}
        citations, hits = [], []
        for n in cited:
            c = found.get(by_n.get(n, -1))
            if c is None:
                continue
            citations.append(AnswerCitation(n, c.doc_id, c.id, c.title, c.start, c.end, c.text))
            hits.append(Hit(c.doc_id, c.id, 0.0, c.text, c.title, c.source, c.start, c.end))
        timings = {"communities": t_parts, "total": time.perf_counter() - t0}
        report = ContextReport(getattr(backend, "context_window", 0), {}, [h.chunk_id for h in hits], [])
        notice = (f"a question about the whole memory: answered from {len(parts)} community summaries "
                  f"({cached} from the cache)")
        short = re.sub(r"\s*\[\d+\]", "", text)
        return Answer(question, text, citations, hits, [], report, timings, backend=getattr(backend, "name", ""),
                      short=short, found=bool(parts), support="", usage={"prompt_tokens": tokens}, notices=[notice])
