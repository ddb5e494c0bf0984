"""The store measures its own rankers, without labels, and sets the fusion's votes from it.

Equal votes for dense, BM25 and the graph walk are right where the three are about as
good (the Wikipedia sets) and wrong where one is much weaker (technical docs, news:
MiniLM reads `functools.cmp_to_key`, dates and outlet names poorly and the walk's
entities there are noise). No fixed weighting fits every corpus and a user has no
labelled questions, so at the end of an ingest the store asks itself a few hundred
pseudo-questions: for a sampled chunk, one of its entity mentions and four other content
words of the sentence around it, in order (a keyword question about that sentence, in
the spirit of the inverse-cloze and synthetic-query literature, with no LLM). Each ranker's
MRR@10 of the chunk the question came from is its strength here.

Pseudo-questions copy the chunk's own words, so they flatter BM25 on every corpus: on
MuSiQue and HotpotQA, where the three rankers are about equal on real questions, dense
reaches 0.75 and the walk 0.85 of BM25's MRR. Those ratios are the bias taken out
(`BIAS`); a ranker whose corrected strength falls well below the best one's loses votes
(linearly from `HI` down to `LO`, never below `FLOOR`), and when the others lose votes
the leading ranker's RRF constant shrinks with the cube of their mean vote (its first
ranks count more than the others' tail; on Python's docs a constant above ~17 let the
others' agreement push BM25's right passage out of the top 5). On both Wikipedia sets this gives back the fixed votes; on Python's docs BM25
leads. Measured on every set: benchmarks/eval_fusion.py.
"""
from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..config import RANKERS, fusion_votes
from ..memory.store import SQLiteStore

# The fixed votes (every ranker 1) and RRF constants (the walk's first passages are its
# best, so its constant is smaller: README@f5760d8 "Quality").
FIXED_WEIGHTS = {"dense": 1.0, "lexical": 1.0, "graph": 1.0}
FIXED_K = {"dense": 60, "lexical": 60, "graph": 25}
# Pseudo-question MRR of each ranker relative to BM25's on corpora where real questions find
# the three about equal (MuSiQue 0.76 / 0.85, HotpotQA 0.75 / 0.86): the pseudo-questions' own bias.
BIAS = {"dense": 0.75, "lexical": 1.0, "graph": 0.85}
LO, HI = 0.65, 0.95  # corrected strength, relative to the best ranker's: the least vote at LO, a full one at HI
# The least vote and the least constant: pseudo-questions cannot tell a corpus where BM25
# really leads (Python's docs) from one where only its copied words do (QMSum's meetings,
# whose real questions paraphrase); these bound what a wrong reading costs (eval_fusion.py).
FLOOR = 0.25
MIN_K = 10
META_KEY = "fusion_tuning"
QUESTIONS = 400  # pseudo-questions per measurement (fewer on a small store: one per chunk at most)
MIN_CHUNKS = 40  # below this a store keeps the fixed votes: too few chunks to measure
# A chunk this many places from the question's own, in its document, counts as found. 0:
# only its own (BIAS was measured so; 1 changed no set's reading: QMSum still looks BM25-led).
NEAR = 0
REGROW = 0.5  # measured again when the store has grown by half since the last time

_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
_WORD = re.compile(r"[A-Za-z][\w'-]*")


@dataclass
class FusionTuning:
    """How `auto` fuses the rankers on this store, and what it was measured from.

    Attributes:
        weights: Each ranker's vote in reciprocal-rank fusion.
        k: Each ranker's RRF constant (smaller: its first ranks count more).
        source: "measured" (this store's pseudo-questions), "fixed" (the default votes:
            a store too small to measure, or `Config.fusion="fixed"`), or "config"
            (votes given in `Config.fusion`).
        strength: Each ranker's MRR@10 on the pseudo-questions.
        questions: Pseudo-questions asked.
        chunks: The store's chunks when it was measured.
        seconds: What the measurement took.
    """

    weights: dict[str, float] = field(default_factory=lambda: dict(FIXED_WEIGHTS))
    k: dict[str, int] = field(default_factory=lambda: dict(FIXED_K))
    source: str = "fixed"
    strength: dict[str, float] = field(default_factory=dict)
    questions: int = 0
    chunks: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"weights": self.weights, "k": self.k, "source": self.source, "strength": self.strength,
                "questions": self.questions, "chunks": self.chunks, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FusionTuning":
        return cls(weights={r: float(data["weights"][r]) for r in RANKERS},
                   k={r: int(data["k"][r]) for r in RANKERS}, source=str(data.get("source", "measured")),
                   strength={str(r): float(v) for r, v in data.get("strength", {}).items()},
                   questions=int(data.get("questions", 0)), chunks=int(data.get("chunks", 0)),
                   seconds=float(data.get("seconds", 0.0)))


def parse_fusion(value: str) -> FusionTuning | None:
    """`Config.fusion` as a tuning: None for "adaptive" (the store's own measurement), the
    fixed votes for "fixed", else the votes given (SettingError on anything else)."""
    votes = fusion_votes(value)
    if votes is None:
        return None
    return FusionTuning(weights=votes, source="fixed" if value.strip() == "fixed" else "config")


def weights_from(strength: dict[str, float]) -> tuple[dict[str, float], dict[str, int]]:
    """Votes and RRF constants from each ranker's pseudo-question MRR (see the module's doc)."""
    corrected = {r: strength[r] / BIAS[r] for r in RANKERS}
    best = max(corrected.values())
    if best <= 0:
        return dict(FIXED_WEIGHTS), dict(FIXED_K)
    relative = {r: corrected[r] / best for r in RANKERS}
    weights = {r: round(FLOOR + (1 - FLOOR) * min(1.0, max(0.0, (relative[r] - LO) / (HI - LO))), 2)
               for r in RANKERS}
    lead = max(RANKERS, key=lambda r: relative[r])
    others = sum(weights[r] for r in RANKERS if r != lead) / (len(RANKERS) - 1)
    k = dict(FIXED_K)
    if others < 1:
        k[lead] = max(MIN_K, round(FIXED_K[lead] * others ** 3))
    return weights, k


def pseudo_questions(sql: SQLiteStore, n: int = QUESTIONS, seed: int = 0,
                     stopwords: frozenset[str] = frozenset()) -> list[tuple[str, int]]:
    """Up to `n` (question, chunk id): an entity mention of a sampled chunk and four other
    content words of its sentence (five content words where the chunk names no entity)."""
    conn = sql.conn
    rng = random.Random(seed)
    ids = [r[0] for r in conn.execute("SELECT id FROM chunks ORDER BY id")]
    rng.shuffle(ids)
    has_mentions = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'mentions'").fetchone() is not None
    out: list[tuple[str, int]] = []
    for cid in ids:
        if len(out) >= n:
            break
        row = conn.execute("SELECT text FROM chunks WHERE id = ?", (cid,)).fetchone()
        if row is None:
            continue
        sentences = [m for m in _SENTENCE.finditer(row[0]) if len(m.group().split()) >= 6]
        if not sentences:
            continue
        mentions = conn.execute("SELECT text, start FROM mentions WHERE chunk_id = ?", (cid,)).fetchall() \
            if has_mentions else []
        if mentions:
            name, start = rng.choice(mentions)
            sentence = next((s for s in sentences if s.start() <= start < s.end()), rng.choice(sentences))
            taken = set(name.lower().split())
            pool = [w for w in _WORD.findall(sentence.group()) if w.lower() not in stopwords and w.lower() not in taken]
            head, want = [name], 4
        else:
            sentence = rng.choice(sentences)
            pool = [w for w in _WORD.findall(sentence.group()) if w.lower() not in stopwords]
            head, want = [], 5
        picked = sorted(rng.sample(range(len(pool)), min(want, len(pool))))
        words = head + [pool[i] for i in picked]
        if len(words) >= 3:
            out.append((" ".join(words), cid))
    return out


def measure(searcher: Any, questions: list[tuple[str, int]], depth: int = 10, near: int = NEAR) -> dict[str, float]:
    """Each ranker's MRR@`depth` of the chunk each pseudo-question came from; a chunk of the
    same document within `near` places of it counts as found too (chunks overlap, and a
    question about a long text's passage is answered by the text around it as well)."""
    totals = {r: 0.0 for r in RANKERS}
    if not questions:
        return totals
    conn = searcher.passages.sql.conn
    place: dict[int, tuple[str, int]] = {}

    def where(ids: list[int]) -> None:
        missing = [i for i in ids if i not in place]
        for start in range(0, len(missing), 500):
            part = missing[start:start + 500]
            marks = ",".join("?" * len(part))
            for cid, doc, order in conn.execute(f"SELECT id, doc_id, ord FROM chunks WHERE id IN ({marks})", part):
                place[cid] = (doc, order)

    dense_all = searcher.passages.dense_search([q for q, _ in questions], max(depth, 50))
    for (question, cid), dense in zip(questions, dense_all):
        rankings = {"dense": dense, "lexical": searcher.passages.lexical_search(question, depth)}
        if searcher.graph is not None:
            rankings["graph"] = searcher.graph.rank(question, depth, dense=dense).chunks
        tops = {r: [c for c, _ in ranking[:depth]] for r, ranking in rankings.items()}
        where([cid] + [c for ids in tops.values() for c in ids])
        doc, order = place.get(cid, ("", -1))
        for r, ids in tops.items():
            for rank, c in enumerate(ids, 1):
                d, o = place.get(c, ("", -10))
                if c == cid or (d == doc and abs(o - order) <= near):
                    totals[r] += 1.0 / rank
                    break
    return {r: round(totals[r] / len(questions), 4) for r in RANKERS}


def tune(searcher: Any, n: int = QUESTIONS, stopwords: frozenset[str] = frozenset()) -> FusionTuning:
    """Measure this store's rankers on its own pseudo-questions and derive the fusion from it."""
    t0 = time.perf_counter()
    sql = searcher.passages.sql
    chunks = _chunk_count(sql)
    if chunks < MIN_CHUNKS or searcher.graph is None:
        return FusionTuning(chunks=chunks, seconds=round(time.perf_counter() - t0, 2))
    questions = pseudo_questions(sql, min(n, chunks), stopwords=stopwords)
    strength = measure(searcher, questions)
    weights, k = weights_from(strength)
    return FusionTuning(weights=weights, k=k, source="measured", strength=strength, questions=len(questions),
                        chunks=chunks, seconds=round(time.perf_counter() - t0, 2))


def _chunk_count(sql: SQLiteStore) -> int:
    return int(sql.conn.execute("SELECT count(*) FROM chunks").fetchone()[0])


def load(sql: SQLiteStore) -> FusionTuning | None:
    """The store's last measurement (None: never measured, or unreadable)."""
    raw = sql.get_meta(META_KEY)
    if not raw:
        return None
    try:
        return FusionTuning.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def save(sql: SQLiteStore, tuning: FusionTuning) -> None:
    sql.set_meta(META_KEY, json.dumps(tuning.as_dict(), sort_keys=True))


def stale(sql: SQLiteStore, tuning: FusionTuning | None) -> bool:
    """Measure (again): never measured, or the store grew or shrank by `REGROW` since."""
    chunks = _chunk_count(sql)
    if tuning is None:
        return chunks >= MIN_CHUNKS
    if tuning.chunks < MIN_CHUNKS:
        return chunks >= MIN_CHUNKS
    return abs(chunks - tuning.chunks) > REGROW * tuning.chunks
