"""Live backups: `kgmem backup DEST` while a real writer runs, and what a backup refuses."""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from kgmem import Memory
from kgmem.errors import BackupError

from .conftest import corpus_lines
from .test_reliability import ENV, kgmem


def committed_documents(store) -> int:
    try:
        with sqlite3.connect(f"file:{store / 'kgmem.db'}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT count(*) FROM documents").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_backup_during_a_running_ingest_is_whole_and_checks_clean(tmp_path):
    lines = corpus_lines(600)
    records = {json.loads(line)["id"]: json.loads(line) for line in lines}
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    store, dest = tmp_path / "s", tmp_path / "copy"
    # a real second process, committing every 16 documents (so the copy falls between commits)
    code = ("import sys; from pathlib import Path; from kgmem import Config, Memory\n"
            "with Memory(sys.argv[1], Config(docs_per_batch=16)) as m: m.ingest(Path(sys.argv[2]))")
    writer = subprocess.Popen([sys.executable, "-c", code, str(store), str(corpus)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 300
        while committed_documents(store) < 40 and time.monotonic() < deadline and writer.poll() is None:
            time.sleep(0.5)
        out = kgmem("backup", str(dest), "--store", str(store), "--json")
        still_writing = writer.poll() is None
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert out.returncode == 0, out.stderr
    assert still_writing, "the ingest finished before the backup did: nothing concurrent was tested"
    report = json.loads(out.stdout)
    assert 0 < report["documents"] < len(records)
    assert report["vectors"] == report["chunks"]
    assert not any(p.name.startswith(".copy.backup") for p in tmp_path.iterdir())  # the temp folder is gone

    assert kgmem("check", "--store", str(dest)).stdout.strip() == "ok"
    with Memory(dest) as copy:
        ids = copy.passages.sql.document_ids()
        assert len(ids) == report["documents"]
        # every document whole: its text as the corpus has it, its chunks cover it, its facts are in
        for doc_id in ids:
            doc = copy.get(doc_id)
            assert doc.text == records[doc_id]["text"]
            chunks = copy.passages.sql.chunks_of(doc_id)
            assert chunks and chunks[0].start == 0 and chunks[-1].end == len(doc.text)
        assert copy.graph.missing(ids) == []
        hits = copy.search(records[ids[0]]["title"], k=3)
        assert hits and any(h.doc_id in ids for h in hits)
        assert len(copy.passages.vectors.ids()) == report["chunks"]
    # the copy is a store of its own: it takes writes (its generation goes on from the backup's)
    again = kgmem("ingest", str(corpus), "--store", str(dest), "--json")
    assert again.returncode == 0, again.stderr
    done = json.loads(again.stdout)
    assert done["unchanged"] == report["documents"] and done["added"] == len(records) - report["documents"]


def test_backup_copies_remembered_turns_and_refuses_bad_destinations(tmp_path, embedder, extractor):
    store = tmp_path / "s"
    with Memory(store, embedder=embedder, extractor=extractor) as mem:
        mem.ingest([{"id": "a", "title": "Ada Lovelace", "text": "Ada Lovelace wrote the first program in 1843."}])
        mem.remember([{"speaker": "Sam", "text": "My sister Jo moved to Lisbon last spring."}], conversation="c1",
                     at="2024-05-01")
        report = mem.backup(tmp_path / "b1")
        assert report.conversations and report.documents == 1 and report.dropped_vectors == 0
        with pytest.raises(BackupError, match="not empty"):
            mem.backup(tmp_path / "b1")
        with pytest.raises(BackupError, match="inside the store"):
            mem.backup(store / "nested")
        (tmp_path / "empty").mkdir()
        assert mem.backup(tmp_path / "empty").documents == 1  # an empty folder is fine
    with Memory(tmp_path / "b1", embedder=embedder, extractor=extractor) as copy:
        assert copy.check() == []
        assert copy.get("a").title == "Ada Lovelace"
        recalled = copy.recall("Where did Jo move?", conversation="c1")
        assert "Lisbon" in " ".join(t.text for t in recalled)
    bad = kgmem("backup", str(tmp_path / "b1"), "--store", str(store))
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "not empty" in bad.stderr
