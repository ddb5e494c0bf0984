"""Fusion that adapts to its corpus: every ranker alone, fixed votes and the store's own
measured votes, each with and without the per-question guard, on four sets of different
shapes, same run, fresh stores.

    .venv/bin/python benchmarks/eval_fusion.py [--sets musique,hotpotqa,pydocs,qmsum] [--out FILE]

Sets: MuSiQue (200 questions) and HotpotQA (100) from ../shared/bench, recall of the gold
documents (the shared protocol, with its same-run dense reference); Python's docs
(benchmarks/pydocs, 46 questions: a chunk of the right page holding the evidence phrase,
hit@k); QMSum's meetings (237 specific queries: recall of the chunks overlapping the
relevant turns among the first k of the meeting's own chunks, out of min(k, relevant)).
Also: ingest seconds with and without the self-measurement. Writes
benchmarks/results/fusion.json.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kgmem import Memory  # noqa: E402
from kgmem.eval import dense_reference, load_dataset, ranked_documents, recall_at  # noqa: E402
from kgmem.retrieval import search as search_module  # noqa: E402

BENCH = ROOT.parent / "shared" / "bench"
KS = (2, 5, 10)
SYSTEMS = (("dense", "dense", None, False), ("lexical", "lexical", None, False), ("graph", "graph", None, False),
           ("fixed", "auto", "fixed", False), ("fixed + guard", "auto", "fixed", True),
           ("adaptive", "auto", "adaptive", False), ("adaptive + guard (auto)", "auto", "adaptive", True))


def norm(text: str) -> str:
    return " ".join(text.split())


def load(name: str) -> tuple[list, list[dict]]:
    """(what to ingest, questions with what scores them)."""
    if name in ("musique", "hotpotqa"):
        ds = load_dataset(BENCH / name)
        items = [{"id": d["id"], "title": d.get("title", ""), "text": d["text"]} for d in ds.corpus]
        return items, [{"q": q["question"], "gold": q["gold_ids"]} for q in ds.questions]
    if name == "pydocs":
        pages = sorted((ROOT / "benchmarks" / "pydocs" / "pages").glob("*.html"))
        qs = [json.loads(line) for line in open(ROOT / "benchmarks" / "pydocs" / "questions.jsonl")]
        return pages, [{"q": q["question"], "page": q["page"], "evidence": norm(q["evidence"])} for q in qs]
    if name == "qmsum":
        docs = [json.loads(line) for line in open(BENCH / "qmsum" / "documents.jsonl")]
        turns = {d["id"]: d["turns"] for d in docs}
        qs = [json.loads(line) for line in open(BENCH / "qmsum" / "queries.jsonl")]
        qs = [{"q": q["query"], "doc": q["doc_id"],
               "spans": [(turns[q["doc_id"]][a][0], turns[q["doc_id"]][b][1]) for a, b in q["turn_spans"]]}
              for q in qs if q["kind"] == "specific"]
        return [{"id": d["id"], "title": d.get("title", ""), "text": d["text"]} for d in docs], qs
    raise SystemExit(f"unknown set {name!r}")


def scorer(name: str, mem: Memory):
    """score(question, hits, k) -> 0..1."""
    if name == "pydocs":
        return lambda q, hits, k: float(any(Path(h.source).name == q["page"] and q["evidence"] in norm(h.text)
                                            for h in hits[:k]))
    if name == "qmsum":
        def relevant(q, c) -> bool:
            return any(c.start < b and c.end > a for a, b in q["spans"])

        def score(q, hits, k):
            if "total" not in q:  # the meeting's relevant chunks
                q["total"] = sum(relevant(q, c) for c in mem.passages.sql.chunks_of(q["doc"]))
            own = [h for h in hits if h.doc_id == q["doc"]]
            return sum(relevant(q, h) for h in own[:k]) / min(k, max(q["total"], 1))
        return score
    return lambda q, hits, k: recall_at(ranked_documents([h.doc_id for h in hits]), q["gold"], k)


def run_set(name: str) -> dict:
    items, questions = load(name)
    depth = 300 if name == "qmsum" else 30  # QMSum: the meeting's own chunks among the whole store's
    with tempfile.TemporaryDirectory(prefix=f"kgmem-fusion-{name}-") as store, Memory(store) as mem:
        t0 = time.perf_counter()
        report = mem.ingest(items)
        wall = time.perf_counter() - t0
        fusion = report.fusion or {}
        out = {"questions": len(questions), "chunks": report.chunks,
               "ingest_seconds": round(wall - fusion.get("seconds", 0.0), 1),
               "measure_seconds": fusion.get("seconds", 0.0), "fusion": fusion, "systems": {}}
        out["measure_share"] = round(out["measure_seconds"] / max(out["ingest_seconds"], 1e-9), 3)
        score = scorer(name, mem)
        ratios = search_module.GUARD_RATIO, search_module.GUARD_RATIO_BM25_LEADS
        for label, mode, fusion_setting, guarded in SYSTEMS:
            mem.config.fusion = fusion_setting or "adaptive"
            search_module.GUARD_RATIO, search_module.GUARD_RATIO_BM25_LEADS = ratios if guarded else (math.inf,) * 2
            t1 = time.perf_counter()
            hits = [mem.search(q["q"], depth, mode) for q in questions]
            seconds = time.perf_counter() - t1
            out["systems"][label] = {f"R@{k}": round(100 * sum(score(q, h, k) for q, h in zip(questions, hits))
                                                     / len(questions), 1) for k in KS}
            out["systems"][label]["ms_per_query"] = round(1000 * seconds / len(questions), 1)
        search_module.GUARD_RATIO, search_module.GUARD_RATIO_BM25_LEADS = ratios
        mem.config.fusion = "adaptive"
        if name in ("musique", "hotpotqa"):
            ref = dense_reference(load_dataset(BENCH / name), mem.passages.embedder.embed)
            out["systems"] = {"reference dense (protocol)": {f"R@{k}": round(ref.recall[k], 1) for k in KS
                                                             if k in ref.recall}} | out["systems"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default="musique,hotpotqa,pydocs,qmsum")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fusion.json"))
    args = ap.parse_args()
    result = {"what": "R@2/5/10 of each ranker alone, fixed votes and the store's measured votes, with and "
                      "without the per-question guard; fresh store per set, same run",
              "machine": {"python": platform.python_version(), "cpu": _cpu()}, "sets": {}}
    for name in args.sets.split(","):
        result["sets"][name] = run_set(name)
        s = result["sets"][name]
        print(f"{name}: {s['chunks']} chunks, ingest {s['ingest_seconds']} s + measure {s['measure_seconds']} s; "
              f"fusion {s['fusion'].get('weights')} k {s['fusion'].get('k')}", flush=True)
        for label, row in s["systems"].items():
            print(f"  {label:<28} " + "  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
