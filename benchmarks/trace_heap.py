"""Where ingest's Python heap grows: tracemalloc over batches of real passages.

Ingests `--batch` passages at a time from a shared set into a fresh store (graph on, the
defaults), snapshots the Python heap after `--warm` batches and again after `--batches`
more, and prints the total growth and the call sites that grew most. Native memory
(FAISS's vectors, SQLite's page cache, torch's and spaCy's buffers) is not traced:
compare the growth printed with the peak RSS beside it.

    python benchmarks/trace_heap.py [--batch 100] [--warm 3] [--batches 20] [--top 8]
"""
from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import tempfile
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kgmem import Memory  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", nargs="?", default=str(ROOT.parent / "shared" / "bench" / "musique" / "corpus.jsonl"))
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--warm", type=int, default=3)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--top", type=int, default=8)
    args = ap.parse_args()
    docs = [json.loads(line) for line in open(args.corpus, encoding="utf-8")]
    docs = [{"id": d["id"], "title": d.get("title", ""), "text": d["text"]} for d in docs]
    batches = [docs[i : i + args.batch] for i in range(0, len(docs), args.batch)][: 1 + args.warm + args.batches]

    def rss() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024

    with tempfile.TemporaryDirectory() as store, Memory(store) as mem:
        mem.ingest(batches[0])  # models loaded before tracing starts
        tracemalloc.start(8)
        for batch in batches[1 : 1 + args.warm]:
            mem.ingest(batch)
        gc.collect()
        first, rss_first = tracemalloc.take_snapshot(), rss()
        later = batches[1 + args.warm :]
        for batch in later:
            mem.ingest(batch)
        gc.collect()
        stats = tracemalloc.take_snapshot().compare_to(first, "traceback")
        n = sum(len(b) for b in later)
        growth = sum(s.size_diff for s in stats)
        print(f"{n} passages: Python heap +{growth / 1e6:.1f} MB ({growth / max(n, 1) / 1e3:.1f} KB a passage); "
              f"peak RSS {rss_first} -> {rss()} MB")
        for s in stats[: args.top]:
            print(f"{s.size_diff / 1e6:+8.2f} MB {s.count_diff:+8d} blocks  {s.traceback.format()[-2].strip()}")


if __name__ == "__main__":
    main()
