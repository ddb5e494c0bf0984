"""Peak memory of ingest on large inputs: one 8 MiB document, a 100 MB text file, a 1 GB JSONL.

Ingest is bounded by the text in flight: batches end at `batch_chars` characters (or
`docs_per_batch` documents), a long document is stored as parts of `part_chars`, and
text files are streamed. Each case runs in its own process (graph on, the defaults),
ingests for `--seconds` (stopping after the batch in progress: a 100 MB file takes
hours here) and reports its peak RSS. The same-run references:

- `baseline`: the same process ingesting 100 KB completely — the models' own footprint;
- `8mib-unbounded`: the 8 MiB document the old way (one document, one batch), as
  before this change; it runs for `--seconds` too, so its figure is a lower bound;
- `--reference TREE`: each case run again with the kgmem of another checkout (say, the
  commit before a change), labelled `CASE@reference`.

`--into STORE` adds the case `jsonl-1gb-into`: the same JSONL ingested into an existing
store (say, `scale_store.py`'s million chunks, about what the whole 1 GB JSONL makes), so
the writer's memory at the end of a whole ingest is measured without its 11 hours. The
store is written to: use a copy you can lose. Its `chunks` count is the store's total.

Each batch's sample is (seconds, words, chunks, peak RSS MB, current RSS MB); `growth`
fits current RSS against chunks after the first third of the run (KB a chunk).

    python benchmarks/bench_memory.py --seconds 120 --out benchmarks/results/memory.json
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
SHARED = ROOT.parent / "shared" / "bench" / "musique" / "corpus.jsonl"

CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path
from kgmem import Config, Memory
from kgmem.pipelines.ingest import StopIngest
from kgmem.pipelines.readers import ReaderOptions

spec = json.loads(sys.argv[1])
config = Config(**spec.get("config", {}))
options = ReaderOptions(**spec.get("options", {}))
t0 = time.perf_counter()
samples = []

def rss_now():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20

def progress(p):
    samples.append((round(time.perf_counter() - t0, 1), p.words, p.chunks,
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, rss_now()))
    if time.perf_counter() - t0 > spec["seconds"]:
        raise StopIngest()

def growth(samples):
    import numpy as np
    late = [s for s in samples if s[2] > 0]  # (not the progress lines before the first batch)
    late = late[len(late) // 3:]
    if len(late) < 3 or late[-1][2] == late[0][2]:
        return None
    chunks, rss = np.array([s[2] for s in late], float), np.array([s[4] for s in late], float)
    return round(float(np.polyfit(chunks, rss, 1)[0]) * 1024, 2)

def watchdog():  # a batch that outlives the time (the unbounded case): report what it holds now
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                      "seconds": round(time.perf_counter() - t0, 1), "stopped_early": "killed mid-batch",
                      "documents": None, "chunks": None, "words": samples[-1][1] if samples else 0,
                      "rss_by_batch": samples}), flush=True)
    os._exit(0)

import os, threading
threading.Timer(spec["seconds"] * 1.5, watchdog).start()
stopped = False
with Memory(spec["store"], config) as mem:
    opened = rss_now()  # what opening the store holds, before the first batch
    try:
        report = mem.ingest_paths([spec["input"]], options=options, on_progress=progress)
    except StopIngest:
        stopped = True
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    stats = mem.passages.sql.counts()  # (not mem.stats(): it may read the vector index to count it)
print(json.dumps({
    "peak_rss_mb": peak,
    "seconds": round(time.perf_counter() - t0, 1), "stopped_early": stopped, "rss_open_mb": opened,
    "documents": stats["documents"], "chunks": stats["chunks"], "words": stats["words"],
    "rss_by_batch": samples[:: max(1, len(samples) // 12)], "growth_kb_per_chunk": growth(samples),
}), flush=True)
os._exit(0)
"""


def passages() -> list[dict]:
    source = SHARED if SHARED.exists() else ROOT / "data" / "wiki-300.jsonl"
    return [json.loads(line) for line in source.open(encoding="utf-8")]


def write_text(path: Path, size: int, docs: list[dict]) -> None:
    """Real passages, one after another (numbered, so no two repeats are identical)."""
    written, n = 0, 0
    with open(path, "w", encoding="utf-8") as fh:
        while written < size:
            doc = docs[n % len(docs)]
            block = f"{doc['title']} ({n}).\n{doc['text']}\n\n"
            fh.write(block)
            written += len(block.encode("utf-8"))
            n += 1


def write_jsonl(path: Path, size: int, docs: list[dict]) -> None:
    written, n = 0, 0
    with open(path, "w", encoding="utf-8") as fh:
        while written < size:
            doc = docs[n % len(docs)]
            line = json.dumps({"id": f"r{n}", "title": doc["title"], "text": f"{doc['text']} (copy {n})"}) + "\n"
            fh.write(line)
            written += len(line.encode("utf-8"))
            n += 1


def run(case: str, spec: dict, tree: Path = ROOT) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KGMEM_THREADS": os.environ.get("KGMEM_THREADS", "2"),
           "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True, env=env,
                          cwd=tree)
    if proc.returncode != 0:
        raise SystemExit(f"{case}: {proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{case:>16}: peak RSS {out['peak_rss_mb']} MB, {out['words']:,} words in {out['seconds']} s"
          f"{' (stopped)' if out['stopped_early'] else ''}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=120.0, help="Ingest time per case (then stop after the batch).")
    ap.add_argument("--out", help="Write the JSON result here.")
    ap.add_argument("--cases", help="Comma-separated subset of: baseline, 8mib, 8mib-unbounded, text-100mb, "
                                    "jsonl-1gb, jsonl-1gb-glibc.")
    ap.add_argument("--reference", type=Path, help="A checkout whose kgmem runs each case again, as the reference.")
    ap.add_argument("--into", type=Path, help="An existing store (written to) for the case jsonl-1gb-into.")
    args = ap.parse_args()
    docs = passages()
    work = Path(tempfile.mkdtemp(prefix="kgmem-mem-"))
    inputs = {
        "small.txt": (write_text, 100 * 1024),
        "one-8mib.jsonl": (None, 0),
        "big-100mb.txt": (write_text, 100 * 10**6),
        "big-1gb.jsonl": (write_jsonl, 10**9),
    }
    t0 = time.perf_counter()
    for name, (writer, size) in inputs.items():
        if writer is not None:
            writer(work / name, size, docs)
    text_8 = (work / "small.txt").read_text()
    record = {"id": "one", "title": "One long document", "text": (text_8 * (8 * 2**20 // len(text_8) + 1))[: 8 * 2**20]}
    (work / "one-8mib.jsonl").write_text(json.dumps(record) + "\n")
    print(f"inputs written in {time.perf_counter() - t0:.0f} s under {work}", flush=True)
    unbounded = {"config": {"batch_chars": 10**12}, "options": {"part_chars": 10**12}}
    cases = {
        "baseline": ("small.txt", {}),
        "8mib": ("one-8mib.jsonl", {}),
        "8mib-unbounded": ("one-8mib.jsonl", unbounded),
        "text-100mb": ("big-100mb.txt", {}),
        "jsonl-1gb": ("big-1gb.jsonl", {}),
        # the same, glibc's own mmap threshold (before malloc_mmap_mb): the same-run reference
        "jsonl-1gb-glibc": ("big-1gb.jsonl", {"config": {"malloc_mmap_mb": 0}}),
    }
    if args.into:
        cases["jsonl-1gb-into"] = ("big-1gb.jsonl", {"store": str(args.into.resolve())})
    if args.cases:
        cases = {k: v for k, v in cases.items() if k in set(args.cases.split(",")) | {"baseline"}}
    results = {}
    trees = [("", ROOT)] + ([("@reference", args.reference.resolve())] if args.reference else [])
    for case, (name, extra) in cases.items():
        for label, tree in trees:
            spec = {"input": str(work / name), "store": str(work / f"store-{case}{label}"), "seconds": args.seconds,
                    **extra}
            results[case + label] = {"input": name, "input_mb": round((work / name).stat().st_size / 10**6, 1),
                                     **run(case + label, spec, tree)}
    base = results["baseline"]["peak_rss_mb"]
    for r in results.values():
        r["vs_baseline"] = round(r["peak_rss_mb"] / base, 2)
    out = {"seconds_per_case": args.seconds, "reference": str(args.reference) if args.reference else None,
           "cases": results}
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    for path in work.glob("*"):
        if path.is_file():
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
