"""Retrieval evaluation with the protocol of shared/bench/README.md.

1. every corpus line is one document (its id kept), indexed as title then text;
2. ranked chunks → documents, first occurrence kept, in rank order;
3. Recall@k = |gold ∩ top-k docs| / |gold|, mean over questions, in percent, k = 2, 5, 10;
4. always next to the dense-only reference from the same run: the same embedder,
   exact inner product over normalised "title\\ntext" vectors, computed here
   independently of the store.
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

KS = (2, 5, 10)


@dataclass
class Dataset:
    corpus: list[dict[str, Any]]
    questions: list[dict[str, Any]]
    name: str = ""


def load_dataset(directory: str | Path, limit: int | None = None) -> Dataset:
    directory = Path(directory)
    corpus_path, questions_path = directory / "corpus.jsonl", directory / "questions.jsonl"
    for p in (corpus_path, questions_path):
        if not p.exists():
            raise FileNotFoundError(f"{p}: missing (a dataset folder holds corpus.jsonl and questions.jsonl)")
    corpus = [json.loads(line) for line in corpus_path.open(encoding="utf-8") if line.strip()]
    questions = [json.loads(line) for line in questions_path.open(encoding="utf-8") if line.strip()]
    if limit:
        questions = questions[:limit]
    return Dataset(corpus=corpus, questions=questions, name=directory.name)


def ranked_documents(doc_ids: Sequence[str]) -> list[str]:
    """Keep each document's first occurrence, in rank order."""
    seen: set[str] = set()
    out = []
    for d in doc_ids:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def recall_at(ranked_docs: Sequence[str], gold: Sequence[str], k: int) -> float:
    gold_set = set(gold)
    if not gold_set:
        return 0.0
    return len(gold_set & set(ranked_docs[:k])) / len(gold_set)


@dataclass
class ModeResult:
    mode: str
    recall: dict[int, float]
    seconds: float
    per_question: list[dict[str, Any]] = field(default_factory=list)


def score_rankings(mode: str, questions: list[dict[str, Any]], rankings: list[list[str]], seconds: float) -> ModeResult:
    per_q = []
    sums = {k: 0.0 for k in KS}
    for q, docs in zip(questions, rankings):
        docs = ranked_documents(docs)
        rec = {k: recall_at(docs, q["gold_ids"], k) for k in KS}
        for k in KS:
            sums[k] += rec[k]
        per_q.append({"id": q["id"], "top": docs[: max(KS)], "recall": {str(k): rec[k] for k in KS}})
    n = max(len(questions), 1)
    return ModeResult(mode, {k: 100.0 * sums[k] / n for k in KS}, seconds, per_q)


def dense_reference(dataset: Dataset, embed: Callable[[list[str]], np.ndarray]) -> ModeResult:
    """The protocol's baseline, built without the store: exact IP over "title\\ntext"."""
    import faiss

    t0 = time.perf_counter()
    texts = [f"{d.get('title', '')}\n{d['text']}" for d in dataset.corpus]
    vecs = embed(texts)
    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(vecs)
    qv = embed([q["question"] for q in dataset.questions])
    _, idx = index.search(qv, max(KS))
    ids = [d["id"] for d in dataset.corpus]
    rankings = [[ids[i] for i in row if i >= 0] for row in idx]
    return score_rankings("reference-dense", dataset.questions, rankings, time.perf_counter() - t0)


def evaluate_modes(
    search: Callable[[str, int, str], list[Any]],
    dataset: Dataset,
    modes: Sequence[str],
    depth: int = 30,
) -> list[ModeResult]:
    """Run every question through `search(question, k, mode)` for each mode."""
    results = []
    for mode in modes:
        t0 = time.perf_counter()
        rankings = [[h.doc_id for h in search(q["question"], depth, mode)] for q in dataset.questions]
        results.append(score_rankings(mode, dataset.questions, rankings, time.perf_counter() - t0))
    return results


_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = re.sub(r"\[\d+\]", " ", text.lower())  # citation markers are not part of the answer
    return " ".join(_ARTICLES.sub(" ", _PUNCT.sub(" ", text)).split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(a) for a in answers))


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    pred = normalize_answer(prediction).split()
    best = 0.0
    for answer in answers:
        gold = normalize_answer(answer).split()
        common = sum(min(pred.count(w), gold.count(w)) for w in set(pred) & set(gold))
        if common:
            p, r = common / len(pred), common / len(gold)
            best = max(best, 2 * p * r / (p + r))
    return best


def answer_scores(ask: Callable[[str], Any], questions: list[dict[str, Any]]) -> dict[str, Any]:
    """EM and F1 (percent) of `ask(question).text` against each question's answers."""
    em = f1 = 0.0
    records = []
    t0 = time.perf_counter()
    for q in questions:
        text = ask(q["question"]).text
        e, f = exact_match(text, q["answers"]), token_f1(text, q["answers"])
        em, f1 = em + e, f1 + f
        records.append({"id": q["id"], "answer": text, "gold": q["answers"], "em": e, "f1": round(f, 3)})
    n = max(len(questions), 1)
    return {"EM": round(100 * em / n, 2), "F1": round(100 * f1 / n, 2),
            "seconds": round(time.perf_counter() - t0, 1), "questions": records}


def format_table(results: Sequence[ModeResult], baseline: str = "reference-dense") -> str:
    base = next((r for r in results if r.mode == baseline), None)
    lines = [f"{'mode':<18} {'R@2':>6} {'R@5':>6} {'R@10':>6}   {'ΔR@5':>6}  {'ms/q':>7}"]
    for r in results:
        delta = f"{r.recall[5] - base.recall[5]:+6.1f}" if base else "   n/a"
        n = max(len(r.per_question), 1)
        lines.append(
            f"{r.mode:<18} {r.recall[2]:6.1f} {r.recall[5]:6.1f} {r.recall[10]:6.1f}   {delta}  {1000 * r.seconds / n:7.1f}"
        )
    return "\n".join(lines)


def results_json(results: Sequence[ModeResult], extra: dict[str, Any] | None = None, per_question: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = dict(extra or {})
    out["modes"] = {
        r.mode: {
            "recall": {f"R@{k}": round(v, 2) for k, v in r.recall.items()},
            "seconds": round(r.seconds, 3),
            **({"questions": r.per_question} if per_question else {}),
        }
        for r in results
    }
    return out


def run_eval(
    memory: Any,
    dataset_dir: str | Path,
    modes: Sequence[str] | None = None,
    limit: int | None = None,
    reference: bool = True,
    on_progress: Callable[[Any], None] | None = None,
    llm: str | None = None,
) -> tuple[list[ModeResult], dict[str, Any]]:
    """Ingest the dataset's corpus into `memory` (a Memory), then score each mode."""
    dataset = load_dataset(dataset_dir, limit)
    t0 = time.perf_counter()
    report = memory.ingest(
        [{"id": d["id"], "title": d.get("title", ""), "text": d["text"]} for d in dataset.corpus],
        on_progress=on_progress,
    )
    info = {
        "dataset": dataset.name,
        "questions": len(dataset.questions),
        "documents": len(dataset.corpus),
        "ingest": {"added": report.added, "unchanged": report.unchanged, "seconds": round(time.perf_counter() - t0, 2)},
    }
    results: list[ModeResult] = []
    if reference:
        results.append(dense_reference(dataset, memory.passages.embedder.embed))
    results.extend(evaluate_modes(memory.search, dataset, modes or memory.search_modes()))
    if llm:
        info["answers"] = answer_scores(lambda q: memory.ask(q, llm=llm), dataset.questions)
        info["answers"]["llm"] = llm
    return results, info
