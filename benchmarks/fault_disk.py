"""A full disk at many points of an ingest, and a read-only filesystem (issue 48, item 2).

Each run mounts a small tmpfs (root only), fills it with a filler file so that FREE bytes
are left, and runs `kgmem ingest` into a store on it. The disk fills somewhere: SQLite's
commit (the WAL), the vector log's append, the index fold, the graph matrix's save. Each
run records: the exit status and the one error line; `kgmem check` on the store as it was
left; then, the filler removed, the same command again and the counts it leaves (nothing
lost or doubled). Last, the store's filesystem is remounted read-only: search and ask
(the no-LLM reader) must work, an ingest must be refused in one line.

    python benchmarks/fault_disk.py [--docs 300] [--out benchmarks/results/fault_disk.json]
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
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_profiles import cpu_model  # noqa: E402

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "KGMEM_THREADS": os.environ.get("KGMEM_THREADS", "2")}
DISK = 24 << 20  # the tmpfs


def kgmem(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kgmem", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def mount(at: Path, size: int, read_only: bool = False) -> None:
    opts = f"size={size}" + (",ro" if read_only else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(at)], check=True)


def remount(at: Path, how: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{how}", str(at)], check=True)


def umount(at: Path) -> None:
    subprocess.run(["umount", str(at)], check=False)


def fill(at: Path, leave: int) -> Path:
    """A filler file taking all but `leave` bytes of the filesystem at `at`."""
    filler = at / "filler"
    st = os.statvfs(at)
    size = max(st.f_bavail * st.f_frsize - leave, 0)
    with open(filler, "wb") as fh:
        fh.truncate(0)
        block = b"\0" * (1 << 20)
        while size > 0:
            fh.write(block[: min(size, len(block))])
            size -= min(size, len(block))
    return filler


def state(store: Path) -> dict:
    out = kgmem("stats", "--store", str(store), "--json")
    return json.loads(out.stdout) if out.returncode == 0 else {"error": out.stderr.strip()}


def point_of(line: str) -> str:
    """Which write the disk filled at, from the file the error line names."""
    for name, point in (("-wal", "sqlite wal"), ("-journal", "sqlite journal"), ("kgmem.db", "sqlite"),
                        ("the database", "sqlite"), ("vectors.log", "vector log append"),
                        ("vectors.faiss", "index fold"), ("vectors.json", "vector state"),
                        ("graph-matrix", "graph matrix save")):
        if name in line:
            return point
    return "other"


def one(corpus: Path, at: Path, leave: int, docs: int) -> dict:
    mount(at, DISK)
    try:
        store = at / "s"
        filler = fill(at, leave)
        t0 = time.perf_counter()
        first = kgmem("ingest", str(corpus), "--store", str(store), "--quiet")
        row: dict = {"free_bytes": leave, "exit": first.returncode, "seconds": round(time.perf_counter() - t0, 1),
                     "stderr_lines": len(first.stderr.strip().splitlines()) if first.stderr.strip() else 0,
                     "error": first.stderr.strip().splitlines()[-1] if first.stderr.strip() else ""}
        row["point"] = point_of(row["error"]) if first.returncode else "none (finished)"
        if (store / "kgmem.db").exists():
            full = kgmem("check", "--store", str(store))  # on the disk still full: opens, or one line
            row["check_on_full_disk"] = full.stdout.strip() or full.stderr.strip()
            filler.unlink()  # the store as the failure left it, checked with room to open it
            check = kgmem("check", "--store", str(store))
            row["check_as_left"] = check.stdout.strip() or check.stderr.strip()
            row["documents_as_left"] = state(store).get("documents")
        else:
            filler.unlink()
            row["check_as_left"], row["documents_as_left"] = "no store created", 0
        row["matrix_saved"] = (store / "graph-matrix.npz").exists()
        if first.returncode == 0 and not row["matrix_saved"]:
            row["point"] = "graph matrix save (a cache: left for the first query)"
        again = kgmem("ingest", str(corpus), "--store", str(store), "--json")
        report = json.loads(again.stdout) if again.returncode == 0 else {}
        final = state(store)
        check = kgmem("check", "--store", str(store))
        row.update({"rerun_exit": again.returncode, "rerun_added": report.get("added"),
                    "rerun_unchanged": report.get("unchanged"), "documents": final.get("documents"),
                    "chunks": final.get("chunks"), "vectors": final.get("vectors"),
                    "check_after": check.stdout.strip() or check.stderr.strip()})
        row["ok"] = (row["stderr_lines"] <= 1 and (row["exit"] == 0 or "no space left" in row["error"])
                     and row["check_as_left"] in ("ok", "no store created") and row["rerun_exit"] == 0
                     and row["documents"] == docs and row["vectors"] == row["chunks"] and row["check_after"] == "ok")
        return row
    finally:
        umount(at)


def matrix(corpus: Path, at: Path) -> dict:
    """The graph walk's matrix cannot be saved: a whole store, its matrix file removed, the
    disk filled to 96 KB, then a search (which builds the matrix and tries to save it)."""
    mount(at, DISK)
    try:
        store = at / "s"
        kgmem("ingest", str(corpus), "--store", str(store), "--quiet")
        (store / "graph-matrix.npz").unlink()
        filler = fill(at, 96 << 10)  # room to open the store (its WAL index), not for the matrix
        search = kgmem("search", "Who wrote the first program?", "--store", str(store), "--mode", "graph", "--json")
        error = search.stderr.strip().splitlines()[-1] if search.returncode else ""
        left = sorted(p.name for p in store.iterdir() if "tmp" in p.name)
        filler.unlink()
        check = kgmem("check", "--store", str(store))
        return {"search_exit": search.returncode, "hits": len(json.loads(search.stdout).get("hits", []))
                if search.returncode == 0 else 0, "error": error, "temp_files_left": left,
                "check": check.stdout.strip() or check.stderr.strip(),
                "ok": search.returncode == 0 and not left and check.stdout.strip() == "ok"}
    finally:
        umount(at)


def read_only(corpus: Path, at: Path) -> dict:
    mount(at, DISK)
    try:
        store = at / "s"
        kgmem("ingest", str(corpus), "--store", str(store), "--quiet")
        remount(at, "ro")
        search = kgmem("search", "Who wrote the first program?", "--store", str(store), "--json")
        ask = kgmem("ask", "Who wrote the first program?", "--store", str(store), "--llm", "extractive", "--json")
        write = kgmem("ingest", str(ROOT / "data" / "questions.jsonl"), "--store", str(store))
        check = kgmem("check", "--store", str(store))
        return {"search_exit": search.returncode, "hits": len(json.loads(search.stdout).get("hits", []))
                if search.returncode == 0 else 0, "ask_exit": ask.returncode,
                "write_exit": write.returncode, "write_error": write.stderr.strip(),
                "check": check.stdout.strip() or check.stderr.strip(),
                "ok": search.returncode == 0 and ask.returncode == 0 and write.returncode == 1
                and len(write.stderr.strip().splitlines()) == 1 and "read-only" in write.stderr}
    finally:
        umount(at)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--free", default="16K,64K,256K,512K,1M,1536K,2M,2560K,3M,4M,6M",
                    help="free bytes left at the start of each run")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fault_disk.json"))
    ap.add_argument("--append", action="store_true", help="add these runs to those already in --out")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (it mounts a small tmpfs)")
    units = {"K": 1 << 10, "M": 1 << 20}
    frees = [int(f[:-1]) * units[f[-1]] if f[-1] in units else int(f) for f in args.free.split(",")]
    lines = (ROOT / "data" / "wiki-300.jsonl").read_text(encoding="utf-8").splitlines()[: args.docs]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "c.jsonl"
        corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
        at = Path(tmp) / "disk"
        at.mkdir()
        runs = []
        for leave in frees:
            row = one(corpus, at, leave, len(lines))
            print(json.dumps(row), flush=True)
            runs.append(row)
        cache = matrix(corpus, at)
        print(json.dumps(cache), flush=True)
        ro = read_only(corpus, at)
        print(json.dumps(ro), flush=True)
    if args.append and Path(args.out).exists():
        runs = json.loads(Path(args.out).read_text())["runs"] + runs
        runs.sort(key=lambda r: r["free_bytes"])
    out = {"what": "kgmem ingest into a store on a tmpfs filled to FREE bytes; then check, free the space, "
                   "run the same command again", "docs": len(lines), "disk_bytes": DISK,
           "cpu": cpu_model(), "runs": runs,
           "points_hit": sorted({r["point"] for r in runs}), "all_ok": all(r["ok"] for r in runs),
           "matrix_not_saved": cache, "read_only": ro}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: out[k] for k in ("points_hit", "all_ok")}))


if __name__ == "__main__":
    main()
