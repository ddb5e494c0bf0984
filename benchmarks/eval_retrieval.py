"""Retrieval quality on a shared bench set, with the same-run dense reference.

    .venv/bin/python benchmarks/eval_retrieval.py [DATASET_DIR] [--store DIR] [--limit N]

Writes benchmarks/results/retrieval_<dataset>.json and prints the table.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kgmem import Memory  # noqa: E402
from kgmem.eval import format_table, results_json, run_eval  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", nargs="?", default=str(ROOT.parent / "shared" / "bench" / "musique"))
    ap.add_argument("--store", help="store directory (default: a fresh temporary one)")
    ap.add_argument("--limit", type=int, help="only the first N questions")
    ap.add_argument("--modes", help="comma-separated modes (default: all)")
    ap.add_argument("--out", help="JSON output path")
    args = ap.parse_args()

    store = args.store or tempfile.mkdtemp(prefix="kgmem-eval-")
    t0 = time.perf_counter()
    with Memory(store) as mem:
        modes = args.modes.split(",") if args.modes else None
        results, info = run_eval(mem, args.dataset, modes=modes, limit=args.limit)
    info["total_seconds"] = round(time.perf_counter() - t0, 1)
    info["machine"] = {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()}
    print(format_table(results))
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"retrieval_{info['dataset']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results_json(results, info, per_question=False), indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
