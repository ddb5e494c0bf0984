"""The HTTP API fuzzed from its own OpenAPI schema with Schemathesis (issue 48, item 1).

A real `kgmem serve` on loopback (token on, the no-LLM reader answering, so a request takes
milliseconds), over a small real store; Schemathesis reads /openapi.json and runs its
phases: examples, coverage (boundary values of every parameter), fuzzing (generated valid
and invalid requests) and stateful sequences along the schema's links (ingest → get →
delete). After the run: the server must still answer /health, and `kgmem check` must pass.

Checks: every Schemathesis check but `positive_data_acceptance`, which expects every
schema-valid value to be accepted: a date is free text that the server parses ("8 May,
2023", ISO 8601) and an answer's token budget must hold the question, which no JSON Schema
states; those answer 422 with the field named, by design.

    python benchmarks/fuzz_api.py [--max-examples 40] [--max-time 300] [--seed 1]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_profiles import cpu_model  # noqa: E402

TOKEN = "fuzz-token-123"
EXCLUDED = ["positive_data_acceptance"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(store: Path, port: int, env: dict) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "kgmem", "serve", "--store", str(store), "--port", str(port),
                             "--token", TOKEN, "--llm", "extractive"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", headers={"Authorization": f"Bearer {TOKEN}"}).is_success:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"kgmem serve exited: {proc.stderr.read()[-2000:]}")
        time.sleep(0.3)
    raise RuntimeError("kgmem serve did not answer /health within 120 s")


def fuzz(port: int, max_examples: int, max_time: int, seed: int, env: dict, report_dir: Path,
         phases: str = "examples,coverage,fuzzing,stateful") -> dict:
    """Run Schemathesis; returns what its summary and report say."""
    binary = Path(sys.executable).with_name("schemathesis")
    cmd = [str(binary), "run", f"http://127.0.0.1:{port}/openapi.json", "-H", f"Authorization: Bearer {TOKEN}",
           "--checks", "all", "--exclude-checks", ",".join(EXCLUDED), "-n", str(max_examples), "--seed", str(seed),
           "--max-time", str(max_time), "--no-color", "--workers", "1", "--generation-database", "none",
           "--phases", phases, "--report", "ndjson", "--report-dir", str(report_dir)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=max_time + 300)
    seconds = time.perf_counter() - t0
    text = out.stdout + out.stderr
    generated = re.search(r"(\d+) generated", text)
    failures = dict(re.findall(r"❌ (ST\d+ [^:\n]+): (\d+)", text))
    requests, statuses = count_requests(report_dir)
    return {"exit": out.returncode, "seconds": round(seconds, 1), "test_cases": int(generated.group(1)) if generated
            else None, "requests": requests, "statuses": statuses,
            "failures": {k: int(v) for k, v in failures.items()},
            "summary": text[text.find("SUMMARY"):][-3000:] if "SUMMARY" in text else text[-3000:],
            "failure_details": text[text.find("FAILURES"):text.find("SUMMARY")][:8000] if "FAILURES" in text else ""}


def count_requests(report_dir: Path) -> tuple[int, dict[str, int]]:
    """Requests sent and responses by status, from Schemathesis's NDJSON event report."""
    statuses: dict[str, int] = {}
    total = 0
    for path in report_dir.glob("*.ndjson"):
        for line in path.open(encoding="utf-8"):
            for status in re.findall(r'"status_code": ?(\d{3})', line):
                statuses[status] = statuses.get(status, 0) + 1
                total += 1
    return total, dict(sorted(statuses.items()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-examples", type=int, default=40, help="test cases per operation and phase")
    ap.add_argument("--max-time", type=int, default=300, help="seconds for the whole Schemathesis run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--docs", type=int, default=40)
    ap.add_argument("--phases", default="examples,coverage,fuzzing,stateful")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fuzz_api.json"))
    args = ap.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KGMEM_THREADS": os.environ.get("KGMEM_THREADS", "1")}
    with tempfile.TemporaryDirectory() as tmp:
        store, corpus = Path(tmp) / "s", Path(tmp) / "c.jsonl"
        lines = (ROOT / "data" / "wiki-300.jsonl").read_text(encoding="utf-8").splitlines()[: args.docs]
        corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
        subprocess.run([sys.executable, "-m", "kgmem", "ingest", str(corpus), "--store", str(store), "--quiet"],
                       check=True, env=env)
        port = free_port()
        server = serve(store, port, env)
        try:
            result = fuzz(port, args.max_examples, args.max_time, args.seed, env, Path(tmp) / "report", args.phases)
            import httpx

            health = httpx.get(f"http://127.0.0.1:{port}/health", headers={"Authorization": f"Bearer {TOKEN}"})
            alive = health.status_code == 200 and server.poll() is None
        finally:
            server.send_signal(signal.SIGINT)
            try:
                _, err = server.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                _, err = server.communicate()
        check = subprocess.run([sys.executable, "-m", "kgmem", "check", "--store", str(store)], capture_output=True,
                               text=True, env=env)
        tracebacks = err.count("Traceback")
    server_errors = sum(n for s, n in result["statuses"].items() if s.startswith("5") and s not in ("502", "503"))
    out = {"what": "Schemathesis (all phases, all checks but positive_data_acceptance) against kgmem serve on "
                   "loopback, --llm extractive, a 40-document store", "cpu": cpu_model(),
           "schemathesis": _version(), "seed": args.seed, "max_examples": args.max_examples,
           "excluded_checks": EXCLUDED, **result, "server_errors_5xx": server_errors, "server_alive": alive,
           "server_tracebacks": tracebacks, "check_after": (check.stdout.strip() or check.stderr.strip())}
    out["ok"] = (not out["failures"] and server_errors == 0 and alive and out["check_after"] == "ok"
                 and tracebacks == 0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({k: out[k] for k in ("ok", "test_cases", "requests", "statuses", "failures",
                                          "server_errors_5xx", "server_alive", "check_after", "seconds")}))


def _version() -> str:
    from importlib.metadata import version

    return version("schemathesis")


if __name__ == "__main__":
    main()
