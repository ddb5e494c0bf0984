"""Memory and time to build the graph walk's matrix, beside a reference checkout.

The writer builds the matrix at the end of each write (and a reader, when no saved one
matches). Each store given is built from in a fresh process per checkout: this one and,
with `--reference TREE`, another (say, the commit before a change). Reported: seconds,
the peak RSS the build added, the matrix's own size, the writer's estimate of the peak
(`_Matrix.build_bytes`, this checkout only), and whether both checkouts built the same
arrays.

    python benchmarks/bench_matrix.py STORE [STORE ...] --reference /tmp/ref-tree \
        --out benchmarks/results/matrix_build.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys, time
import numpy as np
from kgmem.memory.store import SQLiteStore
from kgmem.retrieval.graph import _Matrix

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

store, out = sys.argv[1], sys.argv[2]
sql = SQLiteStore(store, read_only=True)
counts = {t: sql.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
          for t in ("chunks", "entities", "mentions", "relations")}
estimate = _Matrix.build_bytes(sql) / 2**20 if hasattr(_Matrix, "build_bytes") else None
before, t0 = peak(), time.perf_counter()
m = _Matrix.build(sql, 1.0, 5.0)
seconds, added = time.perf_counter() - t0, peak() - before
np.savez(out, **{f: getattr(m, f) for f in m.FIELDS})
print(json.dumps({**counts, "seconds": round(seconds, 1), "peak_added_mb": round(added),
                  "matrix_mb": round(sum(getattr(m, f).nbytes for f in m.FIELDS) / 2**20),
                  "estimate_mb": None if estimate is None else round(estimate)}))
"""


def build_in(tree: Path, store: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "KGMEM_THREADS": os.environ.get("KGMEM_THREADS", "2")}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(store), str(out)], capture_output=True, text=True,
                          env=env, cwd=tree)
    if proc.returncode != 0:
        raise SystemExit(f"{store} with {tree}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def same(a: Path, b: Path) -> bool:
    import numpy as np

    with np.load(a) as x, np.load(b) as y:
        return all(np.array_equal(x[f], y[f]) if f != "data" else np.allclose(x[f], y[f], rtol=1e-5)
                   for f in x.files)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stores", nargs="+", type=Path)
    ap.add_argument("--reference", type=Path, help="Another checkout whose build runs beside this one.")
    ap.add_argument("--out", help="Write the JSON result here.")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for store in args.stores:
            row = {"store": str(store), "this": build_in(ROOT, store, Path(tmp) / "this.npz")}
            if args.reference:
                row["reference"] = build_in(args.reference.resolve(), store, Path(tmp) / "ref.npz")
                row["same_matrix"] = same(Path(tmp) / "this.npz", Path(tmp) / "ref.npz")
                row["peak_ratio"] = round(row["this"]["peak_added_mb"] / max(row["reference"]["peak_added_mb"], 1), 2)
            print(json.dumps(row), flush=True)
            results.append(row)
    out = {"reference": str(args.reference) if args.reference else None, "stores": results}
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
