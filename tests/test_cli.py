"""The `kgmem` command, in a real subprocess, and the REPL through a real pseudo-terminal."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from .conftest import DATA, corpus_lines

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "KGMEM_THREADS": os.environ.get("KGMEM_THREADS", "2"), "PYTHONUNBUFFERED": "1",
       "KGMEM_LLM": "extractive"}  # fast and the same every run; the local models have tests of their own


def kgmem(*args: str, check: bool = False, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "kgmem", *args], capture_output=True, text=True, env=ENV, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"kgmem {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def cli_store(tmp_path_factory) -> Path:
    """A store built by `kgmem ingest` from 60 shipped passages plus one bad file."""
    root = tmp_path_factory.mktemp("cli")
    corpus = root / "corpus"
    corpus.mkdir()
    lines = (DATA / "wiki-300.jsonl").read_text(encoding="utf-8").splitlines()[:60]
    (corpus / "part.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    store = root / "store"
    proc = kgmem("ingest", str(corpus), "--store", str(store), "--json")
    assert proc.returncode == 1, proc.stderr  # one input failed: non-zero, the rest ingested
    report = json.loads(proc.stdout)
    assert report["added"] == 60 and report["chunks"] >= 60
    assert [f["item"].endswith("broken.pdf") for f in report["failed"]] == [True]
    return store


def test_ingest_of_a_missing_file_fails_and_stores_nothing(tmp_path):
    proc = kgmem("ingest", str(tmp_path / "does-not-exist.txt"), "--store", str(tmp_path / "s"), "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["added"] == 0 and report["chunks"] == 0
    assert [f["reason"] for f in report["failed"]] == ["no such file or directory"]


def test_docs_lists_what_the_store_holds(cli_store):
    listed = json.loads(kgmem("docs", "--store", str(cli_store), "--json", "--limit", "0", check=True).stdout)["documents"]
    assert len(listed) >= 60 and [d["id"] for d in listed] == sorted(d["id"] for d in listed)
    assert all(d["chars"] > 0 and d["chunks"] >= 1 and "text" not in d for d in listed)
    some = kgmem("docs", "--store", str(cli_store), "--prefix", "musique-0000", check=True).stdout.splitlines()
    assert len(some) == 10 and all(line.startswith("musique-0000") for line in some)


def test_ingest_summary_search_ask_stats_graph_check(cli_store, tmp_path):
    again = kgmem("ingest", str(DATA / "wiki-300.jsonl"), "--store", str(cli_store), "--quiet")
    assert again.returncode == 0
    assert "unchanged 0" not in again.stdout and "added 240, unchanged 60" in again.stdout

    hits = json.loads(kgmem("search", "first president of the American Psychological Association", "--store",
                            str(cli_store), "--json", "-k", "3", check=True).stdout)["hits"]
    assert len(hits) == 3 and hits[0]["doc_id"].startswith("musique-")

    ans = json.loads(kgmem("ask", "Who was the first president of the American Psychological Association?",
                           "--store", str(cli_store), "--json", check=True).stdout)
    assert ans["answer"] and ans["citations"] and {"retrieve", "generate", "total"} <= set(ans["timings"])
    assert all({"doc_id", "title", "start", "end", "quote"} <= set(c) for c in ans["citations"])
    assert ans["answer"] == ans["short"] + " " + "".join(f"[{c['n']}]" for c in ans["citations"])

    proc = kgmem("ask", "Who was the first president of the American Psychological Association?",
                 "--store", str(cli_store), check=True)
    assert proc.stdout.startswith(ans["short"] + " [") and "Sources:" in proc.stdout
    assert "reading " in proc.stderr and " passages" in proc.stderr
    blank = kgmem("ask", "   ", "--store", str(cli_store))
    assert blank.returncode == 1 and "the question is empty" in blank.stderr and "Traceback" not in blank.stderr

    stats = json.loads(kgmem("stats", "--store", str(cli_store), "--json", check=True).stdout)
    assert stats["documents"] == 300 and stats["entities"] > 0 and stats["relations"] > 0

    g = kgmem("graph", "American Psychological Association", "--store", str(cli_store), check=True).stdout
    assert "American Psychological Association [ORG]" in g
    assert kgmem("check", "--store", str(cli_store), check=True).stdout.strip() == "ok"

    out = tmp_path / "g.graphml"
    assert "wrote" in kgmem("export", str(out), "--store", str(cli_store), check=True).stdout and out.exists()


def test_errors_are_one_line(tmp_path):
    proc = kgmem("search", "x", "--store", str(tmp_path / "none"))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "no kgmem store" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = kgmem("delete", "nope", "--store", str(tmp_path / "none"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr


def test_interrupted_ingest_resumes_with_exact_counts(tmp_path):
    lines = corpus_lines(400)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    store = tmp_path / "s"
    # A shell that runs this suite in the background leaves SIGINT ignored in its children;
    # give the ingest the default disposition, so that Python turns Ctrl-C into KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, "-m", "kgmem", "ingest", str(corpus), "--store", str(store)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Wait for the first committed batch (a progress line), then press Ctrl-C.
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert "docs" in first, first
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in err
    done = json.loads(kgmem("stats", "--store", str(store), "--json", check=True).stdout)["documents"]
    assert 0 < done < len(lines)
    assert kgmem("check", "--store", str(store)).returncode == 0
    rerun = json.loads(kgmem("ingest", str(corpus), "--store", str(store), "--json", check=True).stdout)
    assert rerun["unchanged"] == done and rerun["added"] == len(lines) - done
    final = json.loads(kgmem("stats", "--store", str(store), "--json", check=True).stdout)
    assert final["documents"] == len(lines) and final["vectors"] == final["chunks"]


def test_repl_in_a_pseudo_terminal(cli_store, tmp_path):
    # A pty without a real terminal behind it cannot answer cursor-position queries.
    # The REPL answers with a real llama.cpp model here (the small one, to stay quick).
    small = "llama:smollm2-135m"
    try:
        from kgmem.pipelines.llm.models import installed

        if not installed("smollm2-135m"):
            small = "extractive"
    except ImportError:
        small = "extractive"
    child = pexpect.spawn(sys.executable, ["-m", "kgmem", "repl", "--store", str(cli_store), "--llm", small],
                          env={**ENV, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm", "KGMEM_DATA": str(tmp_path / "data")},
                          encoding="utf-8", timeout=180, dimensions=(50, 200))
    try:
        child.expect("kgmem>")
        child.sendline(":help")
        child.expect(":why N")
        child.expect("kgmem>")
        child.sendline("Who was the first president of the American Psychological Association?")
        child.expect(r"reading \d+ passages? and \d+ facts")
        child.expect("Sources:")
        child.expect(r"\[1\] ")
        child.expect("kgmem>")
        child.sendline(":sources")
        child.expect(r"\[1\] .* — musique-")
        child.expect("kgmem>")
        child.sendline(":why 1")
        child.expect("retrievers: ")
        child.expect("question entities: ")
        child.expect("kgmem>")
        child.sendline(":graph American Psychological Association")
        child.expect(r"American Psychological Association \[ORG\]")
        child.expect("kgmem>")
        child.sendline(":budget")
        child.expect(r"window \d+ tokens")
        child.expect("kgmem>")
        notes = tmp_path / "notes.md"
        notes.write_text("# Harbour notes\n\nThe Tromsø harbour master is Ingrid Solberg.\n")
        child.sendline(f":ingest {notes}")
        child.expect(r"ingest.*?1/\S* docs.*?chunks")  # rich's progress bar on a terminal: documents, chunks, rate, ETA
        child.expect("added 1, unchanged 0")
        child.expect("kgmem>")
        child.sendline(":mode nonsense")
        child.expect("Error: usage")
        child.expect("kgmem>")
        child.sendline(":quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    # history is the user's, kept out of the store
    assert "Who was the first president" in (tmp_path / "data" / "repl_history").read_text()
    assert not (cli_store / "repl_history").exists()


def test_eval_and_a_profile_that_embeds_otherwise_leave_a_users_store_alone(tmp_path):
    store = tmp_path / "mine"
    notes = tmp_path / "notes.md"
    notes.write_text("# Harbour notes\n\nThe Tromsø harbour master is Ingrid Solberg.\n", encoding="utf-8")
    kgmem("ingest", str(notes), "--store", str(store), "--no-graph", "-q", check=True)
    # a benchmark is never ingested into a store holding other documents
    proc = kgmem("eval", str(DATA), "--store", str(store))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "does not" in proc.stderr and "notes.md" in proc.stderr
    # the static embedder's vectors never join MiniLM's
    proc = kgmem("ingest", str(DATA / "wiki-300.jsonl"), "--store", str(store), "--profile", "static")
    assert proc.returncode == 1 and "use a new store" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    stats = json.loads(kgmem("stats", "--store", str(store), "--json", check=True).stdout)
    assert stats["documents"] == 1 and stats["embedder"] == "all-MiniLM-L6-v2"
