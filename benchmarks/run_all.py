"""`make bench`: every benchmark, one after the other (never two at once on 2 cores).

Results land in benchmarks/results/*.json; docs/benchmarks/ and the README table are generated from them by report.py.
"""
from __future__ import annotations

import atexit
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "bench"


def main() -> int:
    store = tempfile.mkdtemp(prefix="kgmem-bench-store-")
    atexit.register(shutil.rmtree, store, True)  # a store per run would fill /tmp
    steps = [
        [sys.executable, str(HERE / "eval_retrieval.py"), "--store", store],
        [sys.executable, str(HERE / "eval_retrieval.py"), str(SHARED / "hotpotqa")],
        # Technical documentation: HTML pages, main-content reader against all text.
        [sys.executable, str(HERE / "eval_docs.py")],
        [sys.executable, str(HERE / "eval_retrieval.py"), "--profile", "fast"],
        [sys.executable, str(HERE / "eval_retrieval.py"), "--profile", "fastest"],
        [sys.executable, str(HERE / "bench_query.py"), "--store", store],
        # Answers: the local model on 30 questions of each set (~25 min), the reader on all.
        [sys.executable, str(HERE / "eval_answers.py"), "--store", store, "--limit", "30", "--llm", "llama",
         "--budgets", "1024,512,2048"],
        [sys.executable, str(HERE / "eval_answers.py"), str(SHARED / "hotpotqa"), "--limit", "30", "--llm", "llama",
         "--budgets", "1024,512,2048"],
        [sys.executable, str(HERE / "eval_answers.py"), "--store", store, "--llm", "extractive", "--budgets", "2048,1024"],
        [sys.executable, str(HERE / "eval_answers.py"), str(SHARED / "hotpotqa"), "--llm", "extractive",
         "--budgets", "2048,1024"],
        # Each writes the results file its docs page reads (benchmarks/report.py).
        [sys.executable, str(HERE / "bench_ingest.py"), "--out", str(HERE / "results" / "ingest_batches.json")],
        [sys.executable, str(HERE / "bench_scale.py")],
        [sys.executable, str(HERE / "bench_memory.py"), "--seconds", "600", "--out",
         str(HERE / "results" / "memory_final.json")],
        [sys.executable, str(HERE / "soak.py"), "--minutes", "10", "--kill-every", "60", "--out",
         str(HERE / "results" / "soak_kills.json")],
        [sys.executable, str(HERE / "bench_cluster.py")],
        [sys.executable, str(HERE / "eval_cluster.py")],
        [sys.executable, str(HERE / "bench_serve.py"), "--out", str(HERE / "results" / "serve.json")],
        # Conversation memory on LoCoMo: recall against dense and BM25, answers against naive RAG.
        [sys.executable, str(HERE / "eval_conversation.py"), "--llm", "llama", "--answer-limit", "40"],
    ]
    for cmd in steps:
        print("+", " ".join(cmd), flush=True)
        if subprocess.call(cmd) != 0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
