"""Answer quality and speed on a shared bench set, beside naive RAG with the same model.

    .venv/bin/python benchmarks/eval_answers.py [DATASET_DIR] [--store DIR] [--skip N] [--limit N]
        [--llm extractive,llama] [--budgets 512,1024,2048] [--mode auto] [--no-reference]

For each backend and each context budget: EM and F1 of kgmem's short answers, seconds
per answer (p50/p95), time to first token and prompt tokens; and, in the same run and
process, the naive RAG reference: the same model given the dense top-5 passages whole
with a plain prompt (for the no-LLM reader: the reader over those passages). Writes
benchmarks/results/answers_<dataset>.json (merged with what is there) and prints tables.
"""
from __future__ import annotations

import argparse
import atexit
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kgmem import Memory  # noqa: E402
from kgmem.eval import answer_scores, format_answers, load_dataset  # noqa: E402


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", nargs="?", default=str(ROOT.parent / "shared" / "bench" / "musique"))
    ap.add_argument("--store", help="store directory (default: a fresh temporary one)")
    ap.add_argument("--limit", type=int, help="only the first N questions (after --skip)")
    ap.add_argument("--skip", type=int, default=0, help="leave out the first N questions")
    ap.add_argument("--llm", default="extractive,llama", help="comma-separated backends")
    ap.add_argument("--budgets", default="1024", help="comma-separated context windows, in tokens")
    ap.add_argument("--no-reference", action="store_true", help="skip naive RAG")
    ap.add_argument("--fact-share", type=float, help="share of the context for graph facts (default 0.2)")
    ap.add_argument("--mode", default="auto", help="retrieval kgmem answers from (auto, dense, lexical, hybrid, graph)")
    ap.add_argument("--hops", type=int, help="hops a question is followed (default: the config's, 2; 0: off)")
    ap.add_argument("--tag", default="", help="suffix of the result key")
    ap.add_argument("--questions", action="store_true", help="keep per-question records in the JSON")
    ap.add_argument("--out", help="JSON output path")
    args = ap.parse_args()

    data = load_dataset(args.dataset, args.limit, args.skip)
    store = args.store or tempfile.mkdtemp(prefix="kgmem-answers-")
    if not args.store:  # a store per run would fill /tmp
        atexit.register(shutil.rmtree, store, True)
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"answers_{data.name}.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    with Memory(store) as mem:
        t0 = time.perf_counter()
        mem.ingest([{"id": d["id"], "title": d.get("title", ""), "text": d["text"]} for d in data.corpus])
        print(f"store ready in {time.perf_counter() - t0:.1f}s ({len(data.questions)} questions)", flush=True)
        for llm in args.llm.split(","):
            t1 = time.perf_counter()
            backend = mem.backend(llm, load=True)
            load = time.perf_counter() - t1
            if args.fact_share is not None:
                mem.configure(fact_share=args.fact_share)
            if args.hops is not None:
                mem.configure(hops=args.hops)
            for i, budget in enumerate(map(int, args.budgets.split(","))):
                # The naive reference does not depend on the budget: run it once per backend.
                reference = not args.no_reference and i == 0
                res = answer_scores(mem, data.questions, backend, reference=reference, budget=budget, mode=args.mode,
                                    on_question=lambda i, n: print(f"  {llm} @{budget}: {i}/{n}", end="\r",
                                                                   flush=True))
                res["load_seconds"] = round(load, 2)
                res["peak_rss_mb"] = round(peak_rss_mb())
                res["limit"] = len(data.questions)
                res["skip"] = args.skip
                print()
                print(format_answers(res), flush=True)
                if not args.questions:
                    for part in ("kgmem", "naive"):
                        res.get(part, {}).pop("questions", None)
                res["fact_share"] = mem.config.fact_share
                res["hops"] = mem.config.hops
                prefix = f"{data.name}/" if args.out else ""  # a shared file holds several sets
                part = f":skip{args.skip}" if args.skip else ""  # not the key of the first N
                results[f"{prefix}{llm}@{budget}{part}{args.tag}"] = res
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
