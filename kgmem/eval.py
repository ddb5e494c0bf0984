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


def load_dataset(directory: str | Path, limit: int | None = None, skip: int = 0) -> Dataset:
    """A bench set's corpus and its questions: the first `limit` after leaving out `skip`."""
    directory = Path(directory)
    corpus_path, questions_path = directory / "corpus.jsonl", directory / "questions.jsonl"
    if not corpus_path.exists():  # a folder with one other JSONL beside questions.jsonl (like data/)
        others = [p for p in directory.glob("*.jsonl") if p.name != "questions.jsonl"]
        corpus_path = others[0] if len(others) == 1 else corpus_path
    for p in (corpus_path, questions_path):
        if not p.exists():
            raise FileNotFoundError(f"{p}: missing (a dataset folder holds corpus.jsonl and questions.jsonl)")
    corpus = [json.loads(line) for line in corpus_path.open(encoding="utf-8") if line.strip()]
    questions = [json.loads(line) for line in questions_path.open(encoding="utf-8") if line.strip()]
    questions = questions[skip:][:limit] if limit else questions[skip:]
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


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else 0.0


NAIVE_PROMPT = ("Answer the question using the passages below. Give only the answer, as short as possible.")


def naive_rag(memory: Any, backend: Any, question: str, k: int = 5) -> tuple[str, dict[str, float]]:
    """The naive RAG reference: the same model given the dense top-k passages whole, with
    a plain prompt and free text out (no graph, no packing, no JSON). For the no-LLM
    reader, the reader over the same dense top-k passages."""
    from .pipelines.llm import ChatBackend
    from .retrieval.packer import Packer

    t0 = time.perf_counter()
    hits = memory.search(question, k=k, mode="dense")
    if isinstance(backend, ChatBackend):
        passages = "\n\n".join(f"{h.title}\n{h.text}" for h in hits)
        result = backend.chat([{"role": "system", "content": NAIVE_PROMPT},
                               {"role": "user", "content": f"{passages}\n\nQuestion: {question}\nAnswer:"}], 48)
        first = result.first_token if result.first_token is not None else time.perf_counter() - t0
        return result.text, {"seconds": time.perf_counter() - t0, "first_token": first,
                             "prompt_tokens": result.prompt_tokens, "cached_tokens": result.cached_tokens}
    ctx = Packer(backend.count_tokens, 100_000, 0).pack(question, hits)
    if getattr(backend, "needs_graph", False):  # the same spaCy mentions, no graph walk
        ctx.mentions = memory.graph.mentions_in(ctx.report.included)
    reply = backend.answer(question, ctx, 0)
    took = time.perf_counter() - t0
    return reply.answer, {"seconds": took, "first_token": took, "prompt_tokens": 0, "cached_tokens": 0}


def answer_scores(memory: Any, questions: list[dict[str, Any]], llm: Any = None, *, reference: bool = True,
                  budget: int | None = None, on_question: Callable[[int, int], None] | None = None,
                  mode: str = "auto") -> dict[str, Any]:
    """EM and F1 (percent) of `memory.ask(question)` against each question's answers, with
    seconds per answer (p50/p95), time to first token and prompt tokens; and, from the
    same run, the naive RAG reference with the same model (`naive_rag`). `mode`: the
    retrieval kgmem's answer step reads from ("dense" isolates the answer step from the
    graph: the same passages naive RAG starts from)."""
    backend = memory.backend(llm, load=True)
    rows: dict[str, list[dict[str, Any]]] = {"kgmem": [], "naive": []}
    # Each method answers every question before the other starts, as one user asking in a
    # row would: the two prompts differ from their first token, so alternating them would
    # evict each one's cached system prompt from llama.cpp's single slot every question.
    total = len(questions) * (2 if reference else 1)
    for i, q in enumerate(questions):
        t0 = time.perf_counter()
        ans = memory.ask(q["question"], llm=backend, budget=budget, mode=mode)
        took = time.perf_counter() - t0
        first = (ans.timings["retrieve"] + ans.timings.get("hops", 0.0) + ans.timings["pack"]
                 + ans.usage.get("first_token_s", 0.0))
        read = list(dict.fromkeys(p.doc_id for p in ans.passages))
        gold = set(q.get("gold_ids") or [])
        rows["kgmem"].append({"id": q["id"], "answer": ans.short, "found": ans.found, "gold": q["answers"],
                              "em": exact_match(ans.short, q["answers"]), "f1": token_f1(ans.short, q["answers"]),
                              "seconds": took, "first_token": first, "prompt_tokens": ans.usage.get("prompt_tokens", 0),
                              "cached_tokens": ans.usage.get("cached_tokens", 0),
                              "cited": [c.doc_id for c in ans.citations], "read": read,
                              "gold_read": len(gold & set(read)) / len(gold) if gold else None})
        if on_question:
            on_question(i + 1, total)
    for i, q in enumerate(questions if reference else []):
        text, cost = naive_rag(memory, backend, q["question"])
        rows["naive"].append({"id": q["id"], "answer": text, "gold": q["answers"],
                              "em": exact_match(text, q["answers"]), "f1": token_f1(text, q["answers"]), **cost})
        if on_question:
            on_question(len(questions) + i + 1, total)
    out: dict[str, Any] = {"llm": getattr(backend, "name", str(llm)), "budget": budget or backend.context_window,
                           "mode": mode}
    for name, records in rows.items():
        if not records:
            continue
        secs = [r["seconds"] for r in records]
        firsts = [r["first_token"] for r in records]
        out[name] = {
            "EM": round(100 * float(np.mean([r["em"] for r in records])), 2),
            "F1": round(100 * float(np.mean([r["f1"] for r in records])), 2),
            "seconds_p50": round(_pct(secs, 50), 3), "seconds_p95": round(_pct(secs, 95), 3),
            "first_token_p50": round(_pct(firsts, 50), 3),
            "prompt_tokens_mean": round(float(np.mean([r["prompt_tokens"] for r in records])), 1),
            "cached_tokens_mean": round(float(np.mean([r["cached_tokens"] for r in records])), 1),
            "questions": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in records],
        }
        if name == "kgmem":
            out[name]["declined"] = sum(1 for r in records if not r["found"])
            # declines the evidence did not excuse: every supporting passage was in the prompt
            out[name]["declined_gold_in_prompt"] = sum(1 for r in records if not r["found"] and r["gold_read"] == 1)
            # the share of each question's supporting passages among those packed for the model
            shares = [r["gold_read"] for r in records if r["gold_read"] is not None]
            if shares:
                out[name]["gold_read"] = round(100 * float(np.mean(shares)), 2)
    return out


def format_answers(a: dict[str, Any]) -> str:
    lines = [f"answers ({a['llm']}, window {a['budget']}):",
             f"{'':<8} {'EM':>6} {'F1':>6}  {'s p50':>7} {'s p95':>7} {'1st tok':>7} {'prompt tok':>10}"]
    for name in ("kgmem", "naive"):
        if name in a:
            r = a[name]
            lines.append(f"{name:<8} {r['EM']:6.1f} {r['F1']:6.1f}  {r['seconds_p50']:7.2f} {r['seconds_p95']:7.2f} "
                         f"{r['first_token_p50']:7.2f} {r['prompt_tokens_mean']:10.0f}")
    return "\n".join(lines)


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


def refuse_foreign(memory: Any, dataset: Dataset) -> None:
    """StoreMismatchError when the store holds a document that is not in the dataset's corpus
    (a long document's parts count as the document they are part of)."""
    from .errors import StoreMismatchError

    ids = {d["id"] for d in dataset.corpus}
    foreign = [row["id"] for row in memory.documents(limit=None) if row.get("part_of", row["id"]) not in ids]
    if foreign:
        raise StoreMismatchError(
            f"{memory.path} holds {len(foreign):,} document{'s' if len(foreign) > 1 else ''} that the benchmark "
            f"{dataset.name} does not (e.g. {foreign[0]!r}): eval builds its own store, so give it a new or empty "
            "--store, or one it built"
        )


def run_eval(
    memory: Any,
    dataset_dir: str | Path,
    modes: Sequence[str] | None = None,
    limit: int | None = None,
    reference: bool = True,
    on_progress: Callable[[Any], None] | None = None,
    llm: str | None = None,
    budget: int | None = None,
) -> tuple[list[ModeResult], dict[str, Any]]:
    """Ingest the dataset's corpus into `memory` (a Memory), then score each mode. A store
    that holds documents the benchmark does not is refused before anything is written:
    eval builds or reuses only an empty store or one it built itself."""
    dataset = load_dataset(dataset_dir, limit)
    refuse_foreign(memory, dataset)
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
        info["answers"] = answer_scores(memory, dataset.questions, llm, reference=reference, budget=budget)
    return results, info
