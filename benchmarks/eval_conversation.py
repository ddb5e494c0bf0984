"""Conversation memory on LoCoMo (../shared/bench/locomo): recall of the turns that hold
each answer, per category, against the two same-run references of the bench README.

Protocol: each conversation is fed session by session, in order, with its date
(`Memory.remember`); then its questions are asked (`Memory.recall`, k=10). Recall@k =
|gold turn ids ∩ top-k| / |gold|, in percent, for k = 5 and 10; unanswerable questions
have no gold turns and are left out of recall. References over single turns indexed
as "<session date>\\n<speaker>: <text> [image: caption]": dense (the same embedder,
exact inner product) and BM25 (SQLite FTS5, the question's words OR-ed).
Cost: seconds per remembered turn, LLM calls at write (must be 0), store size per
1,000 turns.

    python benchmarks/eval_conversation.py --out benchmarks/results/conversation_locomo.json
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LOCOMO = ROOT.parent / "shared" / "bench" / "locomo"
KS = (5, 10)


def recall_at(ranked: list[str], gold: list[str], k: int) -> float:
    return len(set(ranked[:k]) & set(gold)) / len(gold)


def reference_text(session: dict, turn: dict) -> str:
    caption = f" [image: {turn['image_caption']}]" if turn.get("image_caption") else ""
    return f"{session['date_time']}\n{turn['speaker']}: {turn['text']}{caption}"


class References:
    """Dense (exact) and BM25 over one conversation's single turns, as the README says."""

    def __init__(self, embedder, conversation: dict):
        from kgmem.memory.store import fts_query

        self.fts_query = fts_query
        self.ids, texts = [], []
        for s in conversation["sessions"]:
            for t in s["turns"]:
                self.ids.append(t["id"])
                texts.append(reference_text(s, t))
        self.embedder = embedder
        self.vectors = embedder.embed(texts)
        self.texts = texts
        self.db = sqlite3.connect(":memory:")
        self.db.execute("CREATE VIRTUAL TABLE t USING fts5(text, tokenize='porter unicode61 remove_diacritics 2')")
        self.db.executemany("INSERT INTO t(rowid, text) VALUES (?, ?)", [(i, x) for i, x in enumerate(texts)])

    def dense(self, question: str, k: int) -> list[str]:
        scores = self.vectors @ self.embedder.embed([question])[0]
        return [self.ids[i] for i in np.argsort(-scores)[:k]]

    def dense_hits(self, question: str, k: int) -> list:
        """The naive-RAG reference's passages: the dense top-k turns, as indexed."""
        from kgmem.retrieval.types import Hit

        scores = self.vectors @ self.embedder.embed([question])[0]
        return [Hit(doc_id=self.ids[i], chunk_id=int(i), score=float(scores[i]), text=self.texts[i], title="",
                    source="", start=0, end=len(self.texts[i])) for i in np.argsort(-scores)[:k]]

    def bm25(self, question: str, k: int) -> list[str]:
        match = self.fts_query(question)
        if not match:
            return []
        rows = self.db.execute("SELECT rowid FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT ?", (match, k))
        return [self.ids[r[0]] for r in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", type=Path, default=LOCOMO)
    ap.add_argument("--limit", type=int, help="only the first N questions of each conversation")
    ap.add_argument("--llm", help="also answer (e.g. llama): token F1 per category against naive RAG with the "
                    "same model over the dense top-10 turns, and the share of unanswerable questions declined")
    ap.add_argument("--answer-limit", type=int, default=40,
                    help="with --llm: questions answered per conversation (at an even stride)")
    ap.add_argument("--unanswerable", action="store_true",
                    help="with --llm: also ask every unanswerable question (not only those on the stride) and "
                    "report the share declined over all of them")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "conversation_locomo.json")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from kgmem import Memory

    conversations = [json.loads(line) for line in (args.data / "conversations.jsonl").open(encoding="utf-8")]
    questions = [json.loads(line) for line in (args.data / "questions.jsonl").open(encoding="utf-8")]
    top = tempfile.mkdtemp(prefix="kgmem-locomo-")
    atexit.register(shutil.rmtree, top, True)  # a store per run would fill /tmp
    store = Path(top) / "store"
    mem = Memory(store)
    mem.warm(background=False)
    turns, t0 = 0, time.perf_counter()
    for conv in conversations:
        for session in conv["sessions"]:
            mem.remember(session["turns"], conversation=conv["id"], at=session["date_time"])
            turns += len(session["turns"])
    write_s = time.perf_counter() - t0
    llm_calls = len(mem._backends)  # no answering backend was ever made while remembering
    size = sum(f.stat().st_size for f in (store / "conversations").rglob("*") if f.is_file())

    systems = ("kgmem", "dense", "bm25")
    scores: dict[str, dict[str, dict[int, list[float]]]] = {s: defaultdict(lambda: defaultdict(list)) for s in systems}
    refs = {c["id"]: References(mem.passages.embedder, c) for c in conversations}
    seen: dict[str, int] = defaultdict(int)
    recall_s = []
    for q in questions:
        if q["unanswerable"] or not q["gold_ids"]:
            continue
        seen[q["conversation"]] += 1
        if args.limit and seen[q["conversation"]] > args.limit:
            continue
        t1 = time.perf_counter()
        ranked = [r.id for r in mem.recall(q["question"], conversation=q["conversation"], k=max(KS))]
        recall_s.append(time.perf_counter() - t1)
        ref = refs[q["conversation"]]
        for name, got in (("kgmem", ranked), ("dense", ref.dense(q["question"], max(KS))),
                          ("bm25", ref.bm25(q["question"], max(KS)))):
            for k in KS:
                value = recall_at(got, q["gold_ids"], k)
                scores[name][q["category"]][k].append(value)
                scores[name]["overall"][k].append(value)
    answers = answer_eval(mem, refs, questions, args.llm, args.answer_limit, args.unanswerable) if args.llm else None
    mem.close()

    table = {s: {cat: {f"R@{k}": round(100 * float(np.mean(v)), 1) for k, v in ks.items()} | {"n": len(ks[KS[0]])}
                 for cat, ks in scores[s].items()} for s in systems}
    result = {
        "turns": turns, "conversations": len(conversations), "questions": len(questions),
        "seconds_per_turn": round(write_s / turns, 4), "llm_calls_at_write": llm_calls,
        "store_mb_per_1000_turns": round(size / turns * 1000 / 2**20, 2),
        "recall_ms_p50": round(1000 * float(np.median(recall_s)), 1), "recall": table, "answers": answers,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    cats = ["overall"] + sorted(c for c in table["kgmem"] if c != "overall")
    print(f"{turns} turns remembered in {write_s:.1f}s ({result['seconds_per_turn'] * 1000:.0f} ms/turn), "
          f"{llm_calls} LLM calls, {result['store_mb_per_1000_turns']} MB per 1,000 turns; "
          f"recall p50 {result['recall_ms_p50']} ms")
    print(f"{'category':<12} {'n':>4}  " + "  ".join(f"{s + ' R@5':>11} {s + ' R@10':>11}" for s in systems))
    for cat in cats:
        row = "  ".join(f"{table[s][cat]['R@5']:>11} {table[s][cat]['R@10']:>11}" for s in systems)
        print(f"{cat:<12} {table['kgmem'][cat]['n']:>4}  {row}")
    if answers:
        print(f"answers ({answers['llm']}, {answers['questions']} questions): token F1 kgmem / naive RAG")
        for cat, row in answers["f1"].items():
            print(f"  {cat:<12} n={row['n']:<4} {row['kgmem']:>5} {row['naive']:>6}")
        print(f"  unanswerable declined: kgmem {answers['declined']['kgmem']}%, naive {answers['declined']['naive']}% "
              f"(n={answers['declined']['n']}); seconds per answer p50 {answers['seconds_p50']}")
    return 0


def answer_eval(mem, refs, questions, llm: str, limit: int, all_unanswerable: bool = False) -> dict:
    """kgmem's answer from remembered turns against naive RAG (the same model over the
    dense top-10 turns), on `limit` questions of each conversation taken at an even stride
    (every category, unanswerable ones included, in their proportions); with
    `all_unanswerable`, every unanswerable question too (the share declined is then over
    all of them; F1 stays over the stride's answerable questions)."""
    from kgmem.eval import token_f1
    from kgmem.pipelines.query import Prepared, answer
    from kgmem.retrieval.packer import Packer

    backend = mem.backend(llm)
    f1: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    declined: dict[str, list[float]] = defaultdict(list)
    took = []
    chosen = []
    rows = []
    for conv in dict.fromkeys(q["conversation"] for q in questions):
        mine = [q for q in questions if q["conversation"] == conv]
        step = max(len(mine) / limit, 1.0)
        chosen += [mine[int(i * step)] for i in range(min(limit, len(mine)))]
    if all_unanswerable:
        chosen += [q for q in questions if q["unanswerable"] and q not in chosen]
    for q in chosen:
        t0 = time.perf_counter()
        ours = mem.ask(q["question"], conversation=q["conversation"], llm=backend)
        took.append(time.perf_counter() - t0)
        hits = refs[q["conversation"]].dense_hits(q["question"], 10)
        packer = Packer(backend.count_tokens, backend.context_window, mem.config.answer_tokens, render=backend.render,
                        fact_share=0.0, instructions=getattr(backend, "instructions", None))
        prep = Prepared(hits, [], packer.pack(q["question"], hits), {"retrieve": 0.0, "pack": 0.0}, [], q["question"])
        naive = answer(prep, backend, q["question"], answer_tokens=mem.config.answer_tokens)
        rows.append({"id": q["id"], "category": q["category"], "unanswerable": q["unanswerable"],
                     "kgmem": ours.short, "kgmem_found": ours.found, "notices": ours.notices,
                     "cited": [c.doc_id for c in ours.citations], "naive": naive.short, "naive_found": naive.found})
        if q["unanswerable"]:
            declined["kgmem"].append(float(not ours.found))
            declined["naive"].append(float(not naive.found))
            continue
        for cat in (q["category"], "overall"):
            f1[cat]["kgmem"].append(token_f1(ours.short if ours.found else "", q["answers"]))
            f1[cat]["naive"].append(token_f1(naive.short if naive.found else "", q["answers"]))
    pct = lambda xs: round(100 * float(np.mean(xs)), 1) if xs else None  # noqa: E731
    return {
        "llm": backend.name, "questions": len(chosen),
        "f1": {cat: {"n": len(v["kgmem"]), "kgmem": pct(v["kgmem"]), "naive": pct(v["naive"])}
               for cat, v in sorted(f1.items(), key=lambda kv: kv[0] != "overall")},
        "declined": {"n": len(declined["kgmem"]), "kgmem": pct(declined["kgmem"]), "naive": pct(declined["naive"])},
        "seconds_p50": round(float(np.median(took)), 2) if took else None,
        "per_question": rows,
    }


if __name__ == "__main__":
    sys.exit(main())
