"""Query latency: retrieval and retrieval + packing (no generation), p50 / p95.

    .venv/bin/python benchmarks/bench_query.py [--store DIR] [--dataset DIR]

Opens (or first builds, from the dataset's corpus) a store, runs every question of the
dataset through `Memory.context` (auto mode: dense + lexical + graph, then the packer
with the extractive backend's 2,048-token window), once to warm up and once timed, and
the dense-only search as the reference. Writes benchmarks/results/query_<dataset>.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kgmem import Memory  # noqa: E402
from kgmem.eval import load_dataset  # noqa: E402


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM). Not ru_maxrss: that survives exec,
    so a child started by a large parent would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def summary(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(pct(ms, 0.5), 1), "p95_ms": round(pct(ms, 0.95), 1), "mean_ms": round(statistics.mean(ms), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default=str(ROOT.parent / "shared" / "bench" / "musique"))
    ap.add_argument("--store", help="store directory (built from the dataset if empty)")
    ap.add_argument("-k", type=int, default=10)
    args = ap.parse_args()
    ds = load_dataset(args.dataset)
    store = args.store or str(Path("/tmp") / f"kgmem-bench-{ds.name}")
    with Memory(store) as mem:
        if mem.stats()["documents"] < len(ds.corpus):
            mem.ingest([{"id": d["id"], "title": d.get("title", ""), "text": d["text"]} for d in ds.corpus])
        questions = [q["question"] for q in ds.questions]
        for q in questions[:20]:  # warm caches: models, graph matrix, SQLite pages
            mem.context(q, k=args.k)
        timings: dict[str, list[float]] = {"dense_search": [], "auto_retrieve": [], "auto_retrieve_pack": []}
        for q in questions:
            t0 = time.perf_counter()
            mem.search(q, k=args.k, mode="dense")
            timings["dense_search"].append(1000 * (time.perf_counter() - t0))
            t0 = time.perf_counter()
            prep = mem.context(q, k=args.k)
            total = 1000 * (time.perf_counter() - t0)
            timings["auto_retrieve"].append(1000 * prep.timings["retrieve"])
            timings["auto_retrieve_pack"].append(total)
        stats = mem.stats()
    out = {
        "dataset": ds.name, "questions": len(questions), "k": args.k,
        "store": {k: stats[k] for k in ("documents", "chunks", "entities", "relations")},
        **{name: summary(ms) for name, ms in timings.items()},
        "peak_rss_mib": round(peak_rss_mib()),
    }
    path = ROOT / "benchmarks" / "results" / f"query_{ds.name}.json"
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
