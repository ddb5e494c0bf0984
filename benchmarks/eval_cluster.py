"""Retrieval on a store the Ray engine built on a simulated 2-node cluster, beside one the
local engine built, same run: `kgmem eval` (the bench protocol) on each.

    python benchmarks/eval_cluster.py [../shared/bench/musique] [--out results/cluster_eval.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def evaluate(dataset: Path, store: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "kgmem", "eval", str(dataset), "--store", str(store), "--json"],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=True)
    return json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", nargs="?", default=str(ROOT.parent / "shared" / "bench" / "musique"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cluster_eval.json"))
    args = ap.parse_args()
    dataset = Path(args.dataset)
    import ray
    from ray.cluster_utils import Cluster

    from kgmem import Memory

    results: dict = {"dataset": dataset.name, "date": time.strftime("%Y-%m-%d"),
                     "cluster": "ray.cluster_utils.Cluster: 2 nodes, 1 CPU each"}
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, log_to_driver=False)
        t = time.perf_counter()
        with Memory(Path(tmp) / "ray") as mem:
            report = mem.ingest_paths([dataset / "corpus.jsonl"], engine="ray")
        results["ray_ingest"] = {"seconds": round(time.perf_counter() - t, 1), "added": report.added,
                                 "chunks": report.chunks}
        ray.shutdown()
        cluster.shutdown()
        results["ray"] = evaluate(dataset, Path(tmp) / "ray")
        results["local"] = evaluate(dataset, Path(tmp) / "local")  # eval builds it with the local engine
    out = {mode: {"ray": results["ray"]["modes"][mode]["recall"], "local": results["local"]["modes"][mode]["recall"]}
           for mode in results["local"]["modes"]}
    results["same"] = all(v["ray"] == v["local"] for v in out.values())
    results["recall"] = out
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(json.dumps({"same": results["same"], "recall": out}, indent=1))


if __name__ == "__main__":
    main()
