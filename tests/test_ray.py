"""The Ray engine with real Ray: a two-node cluster simulated on this machine (one CPU
each), real models in its actors, the store written by this process. One cluster for the
module (Ray takes seconds to start)."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from kgmem import Config, Memory
from kgmem.errors import ClusterError
from kgmem.pipelines.readers import ReaderOptions

from .conftest import corpus_lines

ray = pytest.importorskip("ray", reason="the Ray engine's tests need kgmem[ray] (make install installs it)")
from ray.cluster_utils import Cluster  # noqa: E402

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "KGMEM_THREADS": "1"}


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 256 << 20})
    c.add_node(num_cpus=1, object_store_memory=256 << 20)
    ray.init(address=c.address, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


def test_an_unreachable_cluster_is_one_line(tmp_path):
    # first in the module: before its cluster is connected (a connected process keeps its cluster)
    assert not ray.is_initialized()
    with Memory(tmp_path / "s") as mem:
        with pytest.raises(ClusterError, match="cannot reach a Ray cluster at 127.0.0.1:1"):
            mem.ingest(["text"], engine="ray", address="127.0.0.1:1")
    with pytest.raises(ValueError, match="unknown ingest engine"):
        Memory(tmp_path / "t").ingest(["text"], engine="spark")


def test_the_cli_says_one_line_when_the_address_cannot_be_reached(tmp_path):
    done = subprocess.run([sys.executable, "-m", "kgmem", "ingest", str(tmp_path), "--store", str(tmp_path / "s"),
                           "--engine", "ray", "--address", "127.0.0.1:1"], env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1
    assert done.stderr.startswith("Error: cannot reach a Ray cluster at 127.0.0.1:1") and "Traceback" not in done.stderr


def _inputs(tmp_path: Path, records: list[dict]) -> list[Path]:
    corpus = tmp_path / "in" / "records.jsonl"
    corpus.parent.mkdir()
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "in" / "guide.md").write_text(
        "# Sorting\n\nPython lists have a list.sort() method that modifies the list in place.\n\n"
        "```python\n>>> sorted([5, 2, 3])\n[2, 3, 5]\n```\n\n## Key functions\n\nThe key parameter of "
        "sorted names a function called on each element before comparisons, as Raymond Hettinger explains.\n")
    long = " ".join(r["text"] for r in records[:12])  # a long document: stored in parts
    (tmp_path / "in" / "long.txt").write_text(long)
    return [tmp_path / "in", tmp_path / "missing.txt"]


def _snapshot(mem: Memory) -> dict:
    sql = mem.passages.sql
    ids = sorted(sql.chunk_ids())
    chunks = sql.chunks(ids)
    docs = {r[0]: tuple(r[1:]) for r in sql.conn.execute("SELECT id, title, text, source, hash FROM documents")}
    key = {i: (chunks[i].doc_id, chunks[i].ord) for i in ids}
    mentions = sorted((key[c], k, t, lab, s, e) for c, k, t, lab, s, e in sql.conn.execute(
        "SELECT chunk_id, key, text, label, start, end FROM mentions"))
    relations = sorted((key[c], sk, p, tk, kind, s, e) for c, sk, p, tk, kind, s, e in sql.conn.execute(
        "SELECT chunk_id, source_key, predicate, target_key, kind, start, end FROM relations"))
    entities = sorted(tuple(r) for r in sql.conn.execute("SELECT key, name, label FROM entities"))
    vectors = dict(zip((key[i] for i in ids), mem.passages.vectors.vectors(np.array(ids))))
    return {"docs": docs, "chunks": sorted((key[i], chunks[i].start, chunks[i].end, chunks[i].text) for i in ids),
            "vectors": vectors, "mentions": mentions, "relations": relations, "entities": entities}


def test_the_ray_engine_makes_the_store_the_local_engine_makes(tmp_path, cluster, wiki_records):
    paths = _inputs(tmp_path, wiki_records[:40])
    options = ReaderOptions(part_chars=3000)
    config = Config(threads=1, docs_per_batch=16)  # several batches, spread over both nodes' actors
    stores, reports = {}, {}
    for engine in ("local", "ray"):
        with Memory(tmp_path / engine, config=config) as mem:
            reports[engine] = mem.ingest_paths(paths, options=options, engine=engine)
            assert mem.check() == []
            stores[engine] = _snapshot(mem)
    local, remote = stores["local"], stores["ray"]
    assert reports["ray"].added == reports["local"].added == 40 + 1 + len([d for d in local["docs"] if "#" in d])
    assert reports["ray"].failed == reports["local"].failed and len(reports["ray"].failed) == 1
    assert reports["ray"].chunks == reports["local"].chunks and reports["ray"].ids == reports["local"].ids
    assert any("#" in d for d in remote["docs"]), "the long text is stored in parts"
    for part in ("docs", "chunks", "mentions", "relations", "entities"):
        assert remote[part] == local[part], part
    assert remote["vectors"].keys() == local["vectors"].keys()
    worst = max(float(np.abs(remote["vectors"][k] - local["vectors"][k]).max()) for k in local["vectors"])
    assert worst < 1e-5
    # the same input again: nothing computed, every document unchanged, as locally
    with Memory(tmp_path / "ray", config=config) as mem:
        again = mem.ingest_paths(paths, options=options, engine="ray")
    assert again.added == again.replaced == 0 and again.unchanged == reports["ray"].added


def test_a_node_lost_mid_ingest_is_retried_with_nothing_missing_or_doubled(tmp_path, cluster):
    records = [json.loads(line) for line in corpus_lines(96)]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records))
    worker = next(n for n in cluster.worker_nodes)
    lost = threading.Event()

    def lose_a_node(progress) -> None:  # after the first batch is written, the worker node goes
        if not lost.is_set():
            lost.set()
            cluster.remove_node(worker)
            cluster.add_node(num_cpus=1, object_store_memory=256 << 20)

    with Memory(tmp_path / "s", config=Config(threads=1, docs_per_batch=8)) as mem:
        report = mem.ingest_paths([corpus], engine="ray", on_progress=lose_a_node)
        assert lost.is_set() and report.added == len(records) and not report.failed
        stats = mem.stats()
        assert stats["documents"] == len(records) and stats["vectors"] == stats["chunks"]
        assert mem.check() == []
        rows = mem.passages.sql.conn.execute("SELECT COUNT(*), COUNT(DISTINCT doc_id || ':' || ord) FROM chunks")
        total, distinct = rows.fetchone()
        assert total == distinct == stats["chunks"]


def _count(store: Path) -> int:
    try:
        with sqlite3.connect(f"file:{store / 'kgmem.db'}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_the_driver_killed_or_interrupted_leaves_a_store_the_same_command_completes(tmp_path, cluster):
    lines = corpus_lines(96)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    store = tmp_path / "s"
    env = {**ENV, "RAY_ADDRESS": cluster.address}
    command = [sys.executable, "-m", "kgmem", "ingest", str(corpus), "--store", str(store), "--engine", "ray",
               "--quiet"]
    Memory(store, config=Config(docs_per_batch=8)).close()  # small batches: the kill lands between commits
    for sig in (signal.SIGKILL, signal.SIGINT):
        before = _count(store)
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 240
        while _count(store) <= before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        if sig == signal.SIGINT:
            assert proc.returncode in (130, 0), err  # 0: it finished before the signal landed
            assert proc.returncode == 0 or "run the same command again" in err
        with Memory(store, read_only=True) as mem:
            assert mem.check_report().ok, mem.check_report().problems
    done = subprocess.run([*command[:-1], "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    with Memory(store) as mem:
        assert mem.stats()["documents"] == len(lines) == report["added"] + report["unchanged"]
        assert mem.stats()["vectors"] == mem.stats()["chunks"] and mem.check() == []


def test_a_jsonl_file_is_read_in_spans_of_whole_lines_numbered_as_in_the_file(tmp_path):
    from kgmem.pipelines.cluster import SPAN_BYTES, FileSpan, plan
    from kgmem.pipelines.readers import Failure, iter_documents, read_path

    lines = corpus_lines(2000)
    lines[1450] = "{not json"  # a bad line in the middle: its failure keeps its line number
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    assert corpus.stat().st_size > 3 * SPAN_BYTES
    spans = plan([corpus, tmp_path / "missing.txt", {"id": "r", "text": "a record"}], ReaderOptions(), 8)
    assert len([s for s in spans if isinstance(s, FileSpan)]) >= 3
    read = []
    for s in spans:
        if isinstance(s, FileSpan):
            read.extend(read_path(s.path, ReaderOptions(), [], s.span))
        else:
            read.extend(iter_documents([s], ReaderOptions()))
    whole = list(iter_documents([corpus, tmp_path / "missing.txt", {"id": "r", "text": "a record"}]))

    def shape(x):
        return ("failed", x.item, x.reason) if isinstance(x, Failure) else (x.id, x.source, x.text)

    assert [shape(x) for x in read] == [shape(x) for x in whole]
    assert any(isinstance(x, Failure) and x.item.endswith(":1451") for x in read)
