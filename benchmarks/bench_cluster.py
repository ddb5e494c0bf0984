"""The Ray engine on this machine, beside the local engine, and the single writer's ceiling.

    python benchmarks/bench_cluster.py [--docs 3722] [--sizes 100000,1000000] [--out results/cluster.json]

1. Words/s of `kgmem ingest` with the local engine and with `--engine ray --workers 1|2`
   (a local Ray cluster started by the command: start-up included), the same corpus (the
   shared MuSiQue passages), fresh stores, each command a fresh process, one after another.
2. The writer's ceiling: chunks/s the driver commits when chunks, vectors and facts are
   already computed (the actors' output, computed once here and fed again under new ids),
   into stores already holding 100k and 1M chunks (scale_store.py's synthetic stores).
   Divided by one worker's chunk rate (from 1), it is the cluster size up to which the
   ingest scales linearly.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
MUSIQUE = ROOT.parent / "shared" / "bench" / "musique" / "corpus.jsonl"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def run_ingest(corpus: Path, store: Path, *extra: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "kgmem", "ingest", str(corpus), "--store", str(store),
                                 "--json", "--quiet", *extra], env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this command's own peak RSS (the driver's, for Ray)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"kgmem ingest {' '.join(extra)} failed: {stderr[-2000:]}")
    report = json.loads(stdout)
    return {"seconds": round(seconds, 1), "words": report["words"], "chunks": report["chunks"],
            "words_per_s": round(report["words"] / seconds), "chunks_per_s": round(report["chunks"] / seconds, 1),
            "documents": report["added"], "peak_rss_mb": usage.ru_maxrss // 1024}


def engines(corpus: Path, work: Path) -> dict:
    cases = {"local": (), "ray, 1 worker": ("--engine", "ray", "--workers", "1"),
             "ray, 2 workers": ("--engine", "ray", "--workers", "2")}
    out = {}
    for name, extra in cases.items():
        store = work / name.replace(", ", "-").replace(" ", "")
        print(f"ingest: {name} ...", file=sys.stderr, flush=True)
        out[name] = run_ingest(corpus, store, *extra)
        print(f"  {out[name]}", file=sys.stderr, flush=True)
        shutil.rmtree(store, ignore_errors=True)
    for name in cases:
        out[name]["vs_local"] = round(out[name]["words_per_s"] / out["local"]["words_per_s"], 3)
    return out


def precomputed(records: list[dict]) -> tuple[list, object]:
    """The actors' output for `records`, computed once in this process."""
    from kgmem import Memory
    from kgmem.pipelines.prepare import prepare_batch
    from kgmem.pipelines.readers import record_to_document

    tmp = Path(tempfile.mkdtemp())
    with Memory(tmp / "s") as mem:
        docs = [record_to_document(r) for r in records]
        from kgmem.pipelines.readers import finalize

        docs = [finalize(d) for d in docs]
        prep = prepare_batch(docs, mem.passages.embedder, mem.graph.extractor, mem.config)
    shutil.rmtree(tmp, ignore_errors=True)
    return docs, prep


def writer_ceiling(store: Path, docs: list, prep, rounds: int) -> dict:
    """Chunks/s of the write path alone (classify, SQLite + FTS + graph, vector log), the
    batch fed `rounds` times under new ids; the vectors saved (folded) at the end, as an
    ingest ends."""
    import dataclasses

    from kgmem import Memory
    from kgmem.pipelines.ingest import IngestReport, _classify, _write_batch

    with Memory(store) as mem:
        before = mem.passages.sql.counts()["chunks"]
        graph = mem.graph if mem.config.graph else None
        report = IngestReport()
        t = time.perf_counter()
        batch = mem.config.docs_per_batch
        n_chunks = [len(c) for c in prep.chunks]
        for r in range(rounds):
            for start in range(0, len(docs), batch):
                part = [dataclasses.replace(d, id=f"w{r}-{d.id}") for d in docs[start : start + batch]]
                lo = sum(n_chunks[:start])
                hi = lo + sum(n_chunks[start : start + batch])
                sub = type(prep)(prep.chunks[start : start + batch], prep.vectors[lo:hi],
                                 prep.facts[lo:hi] if prep.facts is not None else None)
                with mem._write_turn():
                    work = _classify(mem.passages, graph, part, report)
                    _write_batch(mem.passages, graph, work, sub, report)
        commit = time.perf_counter() - t
        with mem._write_turn():
            mem.passages.save_vectors()
        total = time.perf_counter() - t
        return {"chunks_before": before, "chunks_written": report.chunks, "commit_seconds": round(commit, 1),
                "seconds_with_save": round(total, 1), "chunks_per_s": round(report.chunks / total, 1),
                "chunks_per_s_commits_only": round(report.chunks / commit, 1),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=3722, help="MuSiQue passages for the engines' comparison")
    ap.add_argument("--sizes", default="100000,1000000", help="store sizes (chunks) for the writer's ceiling")
    ap.add_argument("--writer-docs", type=int, default=1000, help="passages precomputed for the writer")
    ap.add_argument("--rounds", type=int, default=3, help="times the precomputed passages are written")
    ap.add_argument("--cache", default="/tmp/kgmem-scale", help="scale_store.py's stores and sentence pool")
    ap.add_argument("--skip-engines", action="store_true", help="keep the engines' figures of --out")
    ap.add_argument("--skip-writer", action="store_true", help="keep the writer's figures of --out")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cluster.json"))
    args = ap.parse_args()
    lines = MUSIQUE.read_text().splitlines()[: args.docs]
    records = [json.loads(x) for x in lines]
    results: dict = {"cpu": cpu_model(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
                     "corpus": f"{len(records)} MuSiQue passages"}
    out = Path(args.out)
    if out.exists():
        results = {**json.loads(out.read_text()), **results}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_engines:
            corpus = work / "corpus.jsonl"
            corpus.write_text("\n".join(lines) + "\n")
            results["engines"] = engines(corpus, work)
            out.write_text(json.dumps(results, indent=1))
        from scale_store import build, load_pool

        from kgmem import Config

        sizes = [] if args.skip_writer else [int(s) for s in args.sizes.split(",") if s]
        if sizes:
            docs, prep = precomputed(records[: args.writer_docs])
            pool = load_pool(records, Path(args.cache))
            results["writer"] = {}
        cache = Path(args.cache)
        for n in sizes:
            base = cache / f"store-{n}"
            if not (base / "scale.json").exists():
                shutil.rmtree(base, ignore_errors=True)
                print(f"building {n:,} chunks in {base} ...", file=sys.stderr, flush=True)
                build(base, pool, n, Config())
            store = work / f"writer-{n}"
            shutil.copytree(base, store)
            print(f"writer into {n:,} chunks ...", file=sys.stderr, flush=True)
            results["writer"][str(n)] = writer_ceiling(store, docs, prep, args.rounds)
            print(f"  {results['writer'][str(n)]}", file=sys.stderr, flush=True)
            shutil.rmtree(store, ignore_errors=True)
            out.write_text(json.dumps(results, indent=1))
    one = results.get("engines", {}).get("ray, 1 worker")
    if one:
        for n, w in results["writer"].items():
            w["workers_it_absorbs"] = round(w["chunks_per_s"] / one["chunks_per_s"], 1)
    out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
