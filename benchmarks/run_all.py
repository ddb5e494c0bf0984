"""`make bench`: every benchmark, one after the other (never two at once on 2 cores).

Results land in benchmarks/results/*.json; README.md's tables are copied from them.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    store = tempfile.mkdtemp(prefix="kgmem-bench-store-")
    steps = [
        [sys.executable, str(HERE / "eval_retrieval.py"), "--store", store],
        [sys.executable, str(HERE / "eval_retrieval.py"), "--profile", "fast"],
        [sys.executable, str(HERE / "eval_retrieval.py"), "--profile", "fastest"],
        [sys.executable, str(HERE / "bench_query.py"), "--store", store],
        [sys.executable, str(HERE / "bench_ingest.py")],
        [sys.executable, str(HERE / "bench_scale.py")],
    ]
    for cmd in steps:
        print("+", " ".join(cmd), flush=True)
        if subprocess.call(cmd) != 0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
