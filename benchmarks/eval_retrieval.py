"""Retrieval quality on a shared bench set, with the same-run dense reference.

    .venv/bin/python benchmarks/eval_retrieval.py [DATASET_DIR] [--store DIR] [--limit N] [--profile fast|fastest]

The reference is always exact dense search with the default (torch fp32) embedder,
so a profile's numbers sit next to the protocol's baseline. Writes
benchmarks/results/retrieval_<dataset>[_<profile>].json and prints the table.
"""
from __future__ import annotations

import argparse
import atexit
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kgmem import Config, Memory  # noqa: E402
from kgmem.config import PROFILES  # noqa: E402
from kgmem.eval import dense_reference, format_table, load_dataset, results_json, run_eval  # noqa: E402
from kgmem.memory.embedders import shared_embedder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", nargs="?", default=str(ROOT.parent / "shared" / "bench" / "musique"))
    ap.add_argument("--store", help="store directory (default: a fresh temporary one)")
    ap.add_argument("--limit", type=int, help="only the first N questions")
    ap.add_argument("--modes", help="comma-separated modes (default: all)")
    ap.add_argument("--out", help="JSON output path")
    ap.add_argument("--profile", default="default", choices=list(PROFILES), help="settings of a new store")
    args = ap.parse_args()

    store = args.store or tempfile.mkdtemp(prefix="kgmem-eval-")
    if not args.store:  # a store per run would fill /tmp
        atexit.register(shutil.rmtree, store, True)
    t0 = time.perf_counter()
    config = Config.profile(args.profile)
    new = not (Path(store) / "kgmem.db").exists()
    with Memory(store, config=config if new else None) as mem:
        modes = args.modes.split(",") if args.modes else None
        results, info = run_eval(mem, args.dataset, modes=modes, limit=args.limit, reference=False)
        info["profile"] = {k: getattr(mem.config, k) for k in ("embedder", "embedder_runtime", "embedder_precision",
                                                              "graph_extraction")}
    torch_embed = shared_embedder(Config().embedder, threads=config.threads).embed
    results.insert(0, dense_reference(load_dataset(args.dataset, args.limit), torch_embed))
    info["total_seconds"] = round(time.perf_counter() - t0, 1)
    info["machine"] = {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()}
    print(format_table(results))
    suffix = "" if args.profile == "default" else f"_{args.profile}"
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"retrieval_{info['dataset']}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results_json(results, info, per_question=False), indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
