"""`kgmem serve` under load: 8 HTTP clients search and ask while one ingests and deletes.

Phases, all in one run against one real server process (uvicorn, loopback):
1. Overhead: the same 200 searches through the Python API (this process, warm) and
   through HTTP (one keep-alive client, the server idle otherwise). The number that
   counts is the server's overhead per request: HTTP latency minus API latency.
2. Load: 8 client threads (70% search, 20% ask, 10% document/stats reads) while one
   client ingests 1,000 passages (batches of 20) and then deletes 100 of them.
   Requests/s, p50/p95 per endpoint, errors (must be 0).
3. Audit: `check()` is clean, and every acknowledged document is found by a lexical
   search for its marker exactly once (deleted ones: never).

    python benchmarks/bench_serve.py --out benchmarks/results/serve.json
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "bench" / "musique" / "corpus.jsonl"
BASE = ROOT / "data" / "wiki-300.jsonl"
QUESTIONS = ROOT / "data" / "questions.jsonl"
TOKEN = "bench-token"


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def summary(xs: list[float]) -> dict[str, float]:
    return {"n": len(xs), "p50_ms": round(pct(xs, 50) * 1000, 2), "p95_ms": round(pct(xs, 95) * 1000, 2),
            "mean_ms": round(statistics.fmean(xs) * 1000, 2) if xs else 0.0}


def passages(n: int) -> list[dict]:
    """n real passages (the shared MuSiQue corpus, else the shipped 300 repeated), each
    with a unique marker word for the audit."""
    src = SHARED if SHARED.exists() else BASE
    rows = [json.loads(line) for line in src.open(encoding="utf-8")][300:300 + n] if src == SHARED else []
    base = [json.loads(line) for line in BASE.open(encoding="utf-8")]
    while len(rows) < n:
        rows.append(dict(base[len(rows) % len(base)]))
    return [{"id": f"load-{i:04d}", "title": r.get("title", ""), "text": f"{r['text']} (ref kgmark{i:04d}z)"}
            for i, r in enumerate(rows[:n])]


def start_server(store: str, port: int, llm: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "kgmem", "serve", "--store", store, "--port", str(port),
                             "--token", TOKEN, "--llm", llm], stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env=env)
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", headers={"Authorization": f"Bearer {TOKEN}"},
                         timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.3)
    raise SystemExit("server did not start")


def overhead(store: str, url: str, queries: list[str], threads: int) -> dict:
    """Sequential searches: Python API in this process vs HTTP to the idle server."""
    os.environ["KGMEM_THREADS"] = str(threads)
    from kgmem import Memory

    api_lat, http_lat = [], []
    with Memory(store) as mem:
        mem.warm(background=False)
        for q in queries[:20]:
            mem.search(q, k=10)
        for q in queries:
            t0 = time.perf_counter()
            mem.search(q, k=10)
            api_lat.append(time.perf_counter() - t0)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as c:
        for q in queries[:20]:
            c.get("/search", params={"q": q, "k": 10})
        for q in queries:
            t0 = time.perf_counter()
            r = c.get("/search", params={"q": q, "k": 10})
            http_lat.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
    return {"api": summary(api_lat), "http": summary(http_lat),
            "overhead_p50_ms": round((pct(http_lat, 50) - pct(api_lat, 50)) * 1000, 2),
            "overhead_mean_ms": round((statistics.fmean(http_lat) - statistics.fmean(api_lat)) * 1000, 2)}


def load(url: str, queries: list[str], docs: list[dict], clients: int, deletes: int) -> dict:
    lat: dict[str, list[float]] = {}
    errors: list[str] = []
    lock = threading.Lock()
    done = threading.Event()
    acknowledged: list[str] = []
    deleted: list[str] = []

    def record(name: str, seconds: float, ok: bool, what: str = "") -> None:
        with lock:
            lat.setdefault(name, []).append(seconds)
            if not ok:
                errors.append(f"{name}: {what}")

    def call(c: httpx.Client, name: str, method: str, path: str, **kw) -> httpx.Response | None:
        t0 = time.perf_counter()
        try:
            r = c.request(method, path, **kw)
        except httpx.HTTPError as exc:
            record(name, time.perf_counter() - t0, False, repr(exc))
            return None
        record(name, time.perf_counter() - t0, r.status_code < 400, f"{r.status_code} {r.text[:200]}")
        return r

    def reader(n: int) -> None:
        rng = random.Random(n)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=300) as c:
            while not done.is_set():
                roll, q = rng.random(), rng.choice(queries)
                if roll < 0.7:
                    call(c, "search", "GET", "/search", params={"q": q, "k": 10})
                elif roll < 0.9:
                    call(c, "ask", "POST", "/ask", json={"question": q})
                elif roll < 0.95:
                    call(c, "documents", "GET", "/documents", params={"offset": rng.randrange(300), "limit": 20})
                else:
                    call(c, "stats", "GET", "/stats")

    def writer() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600) as c:
            for i in range(0, len(docs), 20):
                r = call(c, "ingest", "POST", "/ingest", json={"records": docs[i:i + 20]})
                if r is not None and r.status_code == 200:
                    acknowledged.extend(r.json()["ids"])
            for doc_id in random.Random(7).sample(acknowledged, deletes):
                r = call(c, "delete", "DELETE", f"/documents/{doc_id}")
                if r is not None and r.status_code == 200:
                    deleted.append(doc_id)

    readers = [threading.Thread(target=reader, args=(n,)) for n in range(clients)]
    t0 = time.perf_counter()
    for t in readers:
        t.start()
    w = threading.Thread(target=writer)
    w.start()
    w.join()
    done.set()
    for t in readers:
        t.join()
    wall = time.perf_counter() - t0
    total = sum(len(v) for v in lat.values())
    return {"seconds": round(wall, 1), "requests": total, "requests_per_s": round(total / wall, 1),
            "errors": len(errors), "error_samples": errors[:5],
            "endpoints": {k: summary(v) | {"per_s": round(len(v) / wall, 2)} for k, v in sorted(lat.items())},
            "acknowledged": acknowledged, "deleted": deleted}


def audit(store: str, url: str, acknowledged: list[str], deleted: list[str]) -> dict:
    from kgmem import Memory

    gone = set(deleted)
    wrong: list[str] = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as c:
        for doc_id in acknowledged:
            marker = f"kgmark{doc_id.split('-')[1]}z"
            hits = c.get("/search", params={"q": marker, "mode": "lexical", "k": 5}).json()["hits"]
            found = [h["doc_id"] for h in hits if h["doc_id"] == doc_id]
            if found != ([] if doc_id in gone else [doc_id]):
                wrong.append(doc_id)
        health = c.get("/health").json()
    with Memory(store) as mem:
        problems = mem.check()
    return {"checked": len(acknowledged), "wrong": len(wrong), "wrong_samples": wrong[:5], "check": problems,
            "health": health}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=1000)
    ap.add_argument("--deletes", type=int, default=100)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--llm", default="extractive",
                    help="answering backend for the asks (default: the no-LLM reader; one 1.5B model on two cores "
                         "answers one question at a time, and would measure the model, not the server)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve.json")
    args = ap.parse_args()

    from kgmem import Memory

    queries = [json.loads(line)["question"] for line in QUESTIONS.open(encoding="utf-8")]
    queries = (queries * (200 // len(queries) + 1))[:200]
    tmp = Path(tempfile.mkdtemp(prefix="kgmem-serve-bench-"))
    store = str(tmp / "store")
    with Memory(store) as mem:
        mem.ingest([json.loads(line) for line in BASE.open(encoding="utf-8")])
    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(store, port, args.llm, tmp / "serve.log")
    try:
        threads = int(os.environ.get("KGMEM_THREADS", "2"))
        over = overhead(store, url, queries, threads)
        print(f"search, idle server: API p50 {over['api']['p50_ms']} ms, HTTP p50 {over['http']['p50_ms']} ms "
              f"-> overhead {over['overhead_p50_ms']} ms (mean {over['overhead_mean_ms']} ms)", flush=True)
        os.environ["KGMEM_THREADS"] = "1"
        result = load(url, queries, passages(args.passages), args.clients, args.deletes)
        acknowledged, deleted = result.pop("acknowledged"), result.pop("deleted")
        print(f"load: {result['requests']} requests in {result['seconds']} s ({result['requests_per_s']}/s), "
              f"errors {result['errors']}", flush=True)
        for name, s in result["endpoints"].items():
            print(f"  {name:<10} n={s['n']:<5} p50 {s['p50_ms']:>8} ms  p95 {s['p95_ms']:>8} ms", flush=True)
        checked = audit(store, url, acknowledged, deleted)
        print(f"audit: {checked['checked']} acknowledged, {len(deleted)} deleted, wrong {checked['wrong']}, "
              f"check {checked['check'] or 'clean'}", flush=True)
    finally:
        proc.terminate()
        proc.wait(60)
    out = {"passages": args.passages, "deletes": args.deletes, "clients": args.clients, "llm": args.llm,
           "machine": f"{os.cpu_count()} cores", "overhead": over, "load": result, "audit": checked}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    ok = result["errors"] == 0 and checked["wrong"] == 0 and not checked["check"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
