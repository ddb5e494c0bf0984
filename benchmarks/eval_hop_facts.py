"""The graph's facts about the hops' bridge in the prompt, and the yes/no re-ask, beside naive RAG.

    .venv/bin/python benchmarks/eval_hop_facts.py [DATASET_DIR] [--store DIR] [--limit N] [--skip N]

For each question, in one process with one loaded model: kgmem's answer without the
bridge's facts ("before": the prompt of the last round), then with them ("bridge_facts":
`pipelines/query.hop_facts`, room kept for them); the two prompts share their first
passages, so the second reads mostly from llama.cpp's prompt cache. Then naive RAG with
the same model (the dense top-5 passages, a plain prompt). Both kgmem arms carry the
yes/no re-ask (`ChatBackend.yes_or_no`); where it fired, the answer without it was "not in
memory", so its effect is read from the same records ("before_no_reask"). Declines are
counted with how many had every supporting passage in the prompt. Writes
benchmarks/results/hop_facts_<dataset>.json.
"""
from __future__ import annotations

import argparse
import atexit
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kgmem import Memory  # noqa: E402
from kgmem.eval import exact_match, load_dataset, naive_rag, token_f1  # noqa: E402
from kgmem.pipelines.query import answer, prepare  # noqa: E402

ARMS = ("before", "bridge_facts")
YES_NO_NOTICE = "asked for yes or no"


def ask(mem: Memory, backend: Any, question: str, budget: int, bridge: bool) -> tuple[Any, float]:
    t0 = time.perf_counter()
    prep = prepare(mem._searcher, mem.graph, backend, question, k=mem.config.search_k, mode="auto", window=budget,
                   answer_tokens=mem.config.answer_tokens, fact_share=mem.config.fact_share, hops=mem.config.hops,
                   reader=mem.backend("extractive"), bridge=bridge)
    ans = answer(prep, backend, prep.question or question, answer_tokens=mem.config.answer_tokens)
    return ans, time.perf_counter() - t0


def record(q: dict[str, Any], ans: Any, took: float) -> dict[str, Any]:
    gold = set(q.get("gold_ids") or [])
    read = {p.doc_id for p in ans.passages}
    return {"id": q["id"], "answer": ans.short, "found": ans.found, "gold": q["answers"][:3],
            "em": exact_match(ans.short, q["answers"]), "f1": token_f1(ans.short, q["answers"]),
            "seconds": round(took, 3), "prompt_tokens": ans.usage.get("prompt_tokens", 0),
            "cached_tokens": ans.usage.get("cached_tokens", 0),
            "gold_in_prompt": bool(gold) and gold <= read, "hops": [h.bridge for h in ans.hops],
            "yes_no": any(YES_NO_NOTICE in n for n in ans.notices),
            "asked_past": any("asked past it" in n for n in ans.notices)}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        return {}
    out = {"n": len(rows), "EM": round(100 * statistics.mean(r["em"] for r in rows), 2),
           "F1": round(100 * statistics.mean(r["f1"] for r in rows), 2),
           "seconds_p50": round(statistics.median(r["seconds"] for r in rows), 2)}
    if "found" in rows[0]:
        out["declined"] = sum(not r["found"] for r in rows)
        out["declined_gold_in_prompt"] = sum(not r["found"] and r["gold_in_prompt"] for r in rows)
        out["yes_no_reasked"] = sum(r["yes_no"] for r in rows)
        out["asked_past_a_step"] = sum(r["asked_past"] for r in rows)
        out["prompt_tokens_mean"] = round(statistics.mean(r["prompt_tokens"] for r in rows), 1)
    return out


def without_reask(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records as they were before the yes/no re-ask: "not in memory" where it fired."""
    return [{**r, "em": 0.0, "f1": 0.0, "found": False, "yes_no": False} if r["yes_no"] else r for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", nargs="?", default=str(ROOT.parent / "shared" / "bench" / "musique"))
    ap.add_argument("--store", help="store directory (default: a fresh temporary one)")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--skip", type=int, default=0)
    ap.add_argument("--budget", type=int, default=1024)
    ap.add_argument("--out")
    args = ap.parse_args()

    data = load_dataset(args.dataset, args.limit, args.skip)
    store = args.store or tempfile.mkdtemp(prefix="kgmem-hop-facts-")
    if not args.store:
        atexit.register(shutil.rmtree, store, True)
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"hop_facts_{data.name}.json"
    with Memory(store) as mem:
        t0 = time.perf_counter()
        mem.ingest([{"id": d["id"], "title": d.get("title", ""), "text": d["text"]} for d in data.corpus])
        print(f"store ready in {time.perf_counter() - t0:.1f}s ({len(data.questions)} questions)", flush=True)
        backend = mem.backend("llama", load=True)
        rows: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
        for i, q in enumerate(data.questions, 1):
            for arm in ARMS:  # the two prompts share their passages: the second reads them from the cache
                ans, took = ask(mem, backend, q["question"], args.budget, bridge=arm == "bridge_facts")
                rows[arm].append(record(q, ans, took))
            b, f = rows["before"][-1], rows["bridge_facts"][-1]
            print(f"{i}/{len(data.questions)} before {b['f1']:.2f} bridge facts {f['f1']:.2f} "
                  f"hops {len(f['hops'])}: {b['answer'][:40]!r} → {f['answer'][:40]!r}", flush=True)
        naive = []
        for i, q in enumerate(data.questions, 1):
            text, cost = naive_rag(mem, backend, q["question"])
            naive.append({"id": q["id"], "answer": text, "em": exact_match(text, q["answers"]),
                          "f1": token_f1(text, q["answers"]), "seconds": cost["seconds"]})
            print(f"naive {i}/{len(data.questions)}", end="\r", flush=True)
    hopped = [i for i, r in enumerate(rows["bridge_facts"]) if r["hops"]]
    result = {
        "dataset": data.name, "llm": backend.name, "budget": args.budget, "questions": len(data.questions),
        "skip": args.skip,
        "before": summary(rows["before"]), "before_no_reask": summary(without_reask(rows["before"])),
        "bridge_facts": summary(rows["bridge_facts"]), "naive": summary(naive),
        "with_hops": {arm: summary([rows[arm][i] for i in hopped]) for arm in ARMS},
        "per_question": {arm: rows[arm] for arm in ARMS} | {"naive": naive},
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    for name in ("before_no_reask", "before", "bridge_facts", "naive"):
        print(f"{name:<16} {json.dumps(result[name])}")
    print(f"with hops ({len(hopped)}): " + json.dumps(result["with_hops"]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
