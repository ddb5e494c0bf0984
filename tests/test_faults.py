"""A full disk and a read-only filesystem, on real mounts (a small tmpfs; root only).

benchmarks/fault_disk.py sweeps many more fill points with the CLI; these are the bounded
version: the disk fills mid-ingest at a few points, the error is one DiskFullError (one
line from the CLI), the store as left checks clean, and once space is freed the same
ingest completes with nothing lost or doubled.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kgmem import Config, Memory
from kgmem.errors import DiskFullError, ReadOnlyStoreError

from .test_reliability import ENV

DISK = 24 << 20


def _can_mount() -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    probe = Path("/tmp/kgmem-mount-probe")
    probe.mkdir(exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
                        capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", str(probe)], check=False)
    return ok


pytestmark = pytest.mark.skipif(not _can_mount(), reason="needs root and tmpfs mounts")


class Disk:
    """A fresh small tmpfs at `at`, with a filler file that leaves `free` bytes."""

    def __init__(self, at: Path):
        self.at = at
        at.mkdir(exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(at)], check=True)
        self.filler = at / "filler"

    def leave(self, free: int) -> None:
        st = os.statvfs(self.at)
        with open(self.filler, "wb") as fh:
            fh.truncate(0)
            size = max(st.f_bavail * st.f_frsize - free, 0)
            while size > 0:
                fh.write(b"\0" * min(size, 1 << 20))
                size -= min(size, 1 << 20)

    def free_up(self) -> None:
        self.filler.unlink(missing_ok=True)

    def read_only(self) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(self.at)], check=True)

    def close(self) -> None:
        subprocess.run(["umount", str(self.at)], check=False)


def test_a_full_disk_mid_ingest_then_a_rerun_completes(tmp_path, embedder, extractor, wiki_records):
    records = wiki_records[:120]
    config = Config(docs_per_batch=24)  # five batches: the disk can fill between commits
    disk = Disk(tmp_path / "full")
    try:
        with Memory(disk.at / "whole", config, embedder=embedder, extractor=extractor) as mem:
            mem.ingest(records)
        size = sum(p.stat().st_size for p in (disk.at / "whole").iterdir())
        shutil.rmtree(disk.at / "whole")
        failed = []
        for n, fraction in enumerate((0.3, 0.75)):
            store = disk.at / f"s{n}"
            disk.leave(int(size * fraction))
            try:
                with Memory(store, config, embedder=embedder, extractor=extractor) as mem:
                    mem.ingest(records)
            except DiskFullError as exc:
                assert "no space left on the disk holding" in str(exc) and "\n" not in str(exc)
                failed.append(str(exc))
            disk.free_up()
            with Memory(store, config, embedder=embedder, extractor=extractor) as mem:
                assert mem.check() == [], f"as the full disk left it (fill {fraction})"
                report = mem.ingest(records)
                assert report.added + report.unchanged == len(records) and not report.failed
                counts = mem.stats()
                assert counts["documents"] == len(records) and counts["vectors"] == counts["chunks"]
                assert mem.check() == []
            if n == 0:  # the graph walk's matrix cannot be saved: built, used, nothing left behind
                (store / "graph-matrix.npz").unlink()
                disk.leave(96 << 10)  # room to open the store, not to save the matrix
                with Memory(store, config, embedder=embedder, extractor=extractor) as mem:
                    assert mem.search(records[3]["title"], k=3, mode="graph")
                assert not [p.name for p in store.iterdir() if "tmp" in p.name]
                disk.free_up()
            shutil.rmtree(store)
        assert len(failed) >= 2, failed
    finally:
        disk.close()


def test_the_cli_says_one_line_on_a_full_disk_and_a_read_only_mount_is_searched(tmp_path, wiki_records):
    import json

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(json.dumps(r) for r in wiki_records[:30]) + "\n", encoding="utf-8")
    disk = Disk(tmp_path / "d")
    try:
        store = disk.at / "s"
        disk.leave(16 << 10)
        out = subprocess.run([sys.executable, "-m", "kgmem", "ingest", str(corpus), "--store", str(store)],
                             capture_output=True, text=True, env=ENV, timeout=600)
        assert out.returncode == 1 and out.stderr.count("\n") == 1 and "no space left" in out.stderr, out.stderr
        disk.free_up()
        done = subprocess.run([sys.executable, "-m", "kgmem", "ingest", str(corpus), "--store", str(store), "--quiet"],
                              capture_output=True, text=True, env=ENV, timeout=600)
        assert done.returncode == 0, done.stderr
        # a full disk cannot hold even the file SQLite needs to open a WAL store: a store its
        # writer closed is then read as it is (search works), and a write says the one line
        disk.leave(8 << 10)
        search = subprocess.run([sys.executable, "-m", "kgmem", "search", wiki_records[0]["title"], "--store",
                                 str(store), "--json"], capture_output=True, text=True, env=ENV, timeout=600)
        assert search.returncode == 0 and json.loads(search.stdout)["hits"], search.stderr
        more = subprocess.run([sys.executable, "-m", "kgmem", "ingest", str(corpus), "--store", str(store)],
                              capture_output=True, text=True, env=ENV, timeout=600)
        assert more.returncode == 1 and more.stderr.count("\n") == 1 and "no space left" in more.stderr, more.stderr
        disk.free_up()
        disk.read_only()
        with Memory(store) as mem:
            assert mem.read_only and mem.search(wiki_records[0]["title"], k=3)
            assert mem.ask(f"What is {wiki_records[0]['title']}?", llm="extractive").passages
            with pytest.raises(ReadOnlyStoreError):
                mem.ingest(["one more"])
        write = subprocess.run([sys.executable, "-m", "kgmem", "ingest", str(corpus), "--store", str(store)],
                               capture_output=True, text=True, env=ENV, timeout=600)
        assert write.returncode == 1 and write.stderr.count("\n") == 1 and "read-only" in write.stderr
    finally:
        disk.close()
