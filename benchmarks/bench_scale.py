"""Query latency, memory and open time at 10k / 100k / 1M chunks, and IVF recall.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 10000 100000 1000000] [--cache DIR]

Stores are synthesised from real sentences (see scale_store.py for how) and cached
in --cache. Each store is then measured in a fresh process, through the real query
path: `Memory(path)` (open), then every question through `Memory.context` (auto
retrieval: dense + lexical + graph, then packing), once to warm and once timed, with
dense search alone as the same-run reference. Peak RSS is read after the queries.
Where the vectors are IVF, recall@10 against exact search over the same vectors is
measured for several nprobe values, with exact (flat) search latency beside it.
Writes benchmarks/results/scale.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_query import peak_rss_mib, summary  # noqa: E402

SHARED = ROOT.parent / "shared" / "bench" / "musique"


def corpus_and_questions() -> tuple[list[dict], list[str]]:
    if (SHARED / "corpus.jsonl").exists():
        corpus_path, questions_path = SHARED / "corpus.jsonl", SHARED / "questions.jsonl"
    else:
        corpus_path, questions_path = ROOT / "data" / "wiki-300.jsonl", ROOT / "data" / "questions.jsonl"
    corpus = [json.loads(line) for line in corpus_path.read_text().splitlines() if line.strip()]
    questions = [json.loads(line)["question"] for line in questions_path.read_text().splitlines() if line.strip()]
    return corpus, questions


def measure(path: Path, questions: list[str], k: int, profile: str = "default") -> dict:
    """Runs in its own process so open time and RSS belong to this store alone."""

    from kgmem import Config, Memory
    from kgmem.memory.passages import stopwords

    t0 = time.perf_counter()
    mem = Memory(path, config=Config.profile(profile))  # this version's settings, whatever the store saved
    open_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    mem.context(questions[0], k=k)
    first_s = time.perf_counter() - t0
    for q in questions[:20]:
        mem.context(q, k=k)
    timings: dict[str, list[float]] = {"dense_search": [], "auto_retrieve": [], "auto_retrieve_pack": []}
    for q in questions:
        t0 = time.perf_counter()
        mem.search(q, k=k, mode="dense")
        timings["dense_search"].append(1000 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        prep = mem.context(q, k=k)
        timings["auto_retrieve_pack"].append(1000 * (time.perf_counter() - t0))
        timings["auto_retrieve"].append(1000 * prep.timings["retrieve"])
    rss_mb = peak_rss_mib()
    out = {
        "open_s": round(open_s, 2), "first_query_s": round(first_s, 2), "peak_rss_mb": round(rss_mb),
        **{name: summary(ms) for name, ms in timings.items()},
    }
    # What the BM25 postings budget costs: its top 10 against unbounded BM25's, and time.
    budget = mem.passages.sql.postings_budget
    lexical: dict[str, list] = {"budget_ms": [], "unbounded_ms": [], "overlap": []}
    for q in questions:
        t0 = time.perf_counter()
        kept = [c for c, _ in mem.passages.lexical_search(q, k)]
        lexical["budget_ms"].append(1000 * (time.perf_counter() - t0))
        saved, budget.budget = budget.budget, 10**12
        t0 = time.perf_counter()
        full = [c for c, _ in mem.passages.sql.lexical_search(q, k, stopwords=stopwords())]
        lexical["unbounded_ms"].append(1000 * (time.perf_counter() - t0))
        budget.budget = saved
        if full:
            lexical["overlap"].append(len(set(kept) & set(full)) / len(full))
    out["lexical"] = {"postings_budget": budget.budget, "budget": summary(lexical["budget_ms"]),
                      "unbounded": summary(lexical["unbounded_ms"]),
                      f"overlap@{k}_with_unbounded": round(sum(lexical["overlap"]) / max(1, len(lexical["overlap"])), 3)}
    vectors = mem.passages.vectors
    out["vector_layout"] = vectors.kind
    if vectors.kind == "ivf":
        import faiss

        qv = mem.passages.embedder.embed(questions)
        ids = vectors.ids()
        flat = faiss.IndexFlatIP(vectors.dim)
        flat.add(vectors.vectors(ids))
        ms = []
        for v in qv:
            t0 = time.perf_counter()
            _, exact = flat.search(v[None, :], k)
            ms.append(1000 * (time.perf_counter() - t0))
        _, exact = flat.search(qv, k)
        truth = [set(ids[row].tolist()) for row in exact]
        out["exact_search"] = summary(ms)
        out["ivf"] = {"nlist": int(vectors.index.nlist), "default_nprobe": vectors.settings.nprobe, "curve": []}
        for nprobe in (4, 8, 16, 32, 64, 128):
            ms, hits = [], 0
            for v, want in zip(qv, truth):
                t0 = time.perf_counter()
                _, got = vectors.search(v[None, :], k, nprobe=nprobe)
                ms.append(1000 * (time.perf_counter() - t0))
                hits += len(want & set(got[0].tolist()))
            out["ivf"]["curve"].append({"nprobe": nprobe, f"recall@{k}": round(hits / (k * len(qv)), 4), **summary(ms)})
    mem.close()
    return out


def measure_start(path: Path, questions: list[str], k: int, way: str, profile: str = "default") -> dict:
    """Time to the first question's context (retrieval + packing into the answering
    model's window: everything before generation) after open, in two fresh processes:
    `at_once`: warm-up started at open (as the REPL does), the question asked at once;
    `after_warm`: asked once the warm-up (embedder, matrix, word statistics, the answering
    model) is done, as when a user is still typing; the seconds of each part of it."""
    from kgmem import Config, Memory

    t0 = time.perf_counter()
    mem = Memory(path, config=Config.profile(profile))
    open_s = time.perf_counter() - t0
    if way == "at_once":
        mem.warm()
        mem.context(questions[0], k=k)
        out = {"open_s": round(open_s, 2), "first_context_at_once_s": round(time.perf_counter() - t0, 2)}
    else:
        warm = mem.warm(background=False, llm=mem.config.llm)
        t1 = time.perf_counter()
        mem.context(questions[0], k=k)
        out = {"warm_s": warm, "first_context_after_warm_s": round(time.perf_counter() - t1, 3)}
    mem.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--cache", default="/tmp/kgmem-scale")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    ap.add_argument("--measure-start", help=argparse.SUPPRESS)
    ap.add_argument("--way", help=argparse.SUPPRESS)
    ap.add_argument("--profile", default="default", help="the stores' settings (Config.profile); "
                    "writes results/scale_<profile>.json for another than default")
    ap.add_argument("--out", help="results file (default: results/scale[_<profile>].json)")
    args = ap.parse_args()
    corpus, questions = corpus_and_questions()
    if args.measure:
        print(json.dumps(measure(Path(args.measure), questions, args.k, args.profile)))
        return
    if args.measure_start:
        print(json.dumps(measure_start(Path(args.measure_start), questions, args.k, args.way, args.profile)))
        return
    from scale_store import build, load_pool

    from kgmem import Config

    cache = Path(args.cache)
    pool = load_pool(corpus, cache, args.profile)
    suffix = "" if args.profile == "default" else f"_{args.profile}"
    results = {"source": f"{len(corpus)} passages, {len(pool['sentences'])} sentences", "profile": args.profile,
               "pool_seconds": round(pool["seconds"], 1), "questions": len(questions), "stores": []}
    for n in args.sizes:
        path = cache / f"store-{n}{suffix}"
        info_path = path / "scale.json"
        if not info_path.exists():
            if path.exists():
                import shutil

                shutil.rmtree(path)  # a build that did not finish
            print(f"building {n:,} chunks in {path} ...", file=sys.stderr, flush=True)
            build(path, pool, n, Config.profile(args.profile))
        info = json.loads(info_path.read_text())
        print(f"measuring {n:,} chunks ...", file=sys.stderr, flush=True)
        run = subprocess.run(
            [sys.executable, __file__, "--measure", str(path), "-k", str(args.k), "--profile", args.profile],
            capture_output=True, text=True, check=True,
        )
        results["stores"].append({"build": info, **json.loads(run.stdout.strip().splitlines()[-1])})
        start: dict = {}
        for way in ("at_once", "after_warm"):
            run = subprocess.run(
                [sys.executable, __file__, "--measure-start", str(path), "-k", str(args.k), "--way", way,
                 "--profile", args.profile],
                capture_output=True, text=True, check=True,
            )
            start.update(json.loads(run.stdout.strip().splitlines()[-1]))
        results["stores"][-1]["start"] = start
        print(json.dumps(results["stores"][-1]), file=sys.stderr, flush=True)
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"scale{suffix}.json"
    out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
