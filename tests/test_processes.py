"""Many processes on one store: long-lived writers taking turns, and `check` during a live ingest."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from kgmem import Memory

from .conftest import store_and_writer

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "KGMEM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

# A long-lived Memory in its own process, driven one JSON command per line.
AGENT = r"""
import json, logging, sys
from kgmem import Memory

class Count(logging.Handler):
    n = 0
    def emit(self, record):
        if "reconciled" in record.getMessage():
            Count.n += 1

logging.getLogger("kgmem").addHandler(Count())
mem = Memory(sys.argv[1])
for line in sys.stdin:
    cmd = json.loads(line)
    try:
        op = cmd["op"]
        if op == "ingest":
            out = {"added": mem.ingest([cmd["doc"]]).added}
        elif op == "delete":
            out = {"removed": mem.delete(cmd["id"])}
        elif op == "search":
            out = {"ids": [h.doc_id for h in mem.search(cmd["q"], k=10, mode=cmd["mode"])]}
        elif op == "neighbors":
            out = {"facts": len(mem.graph.neighbors(cmd["name"]))}
        elif op == "check":
            out = {"problems": mem.check(), "documents": mem.stats()["documents"]}
        out["reconciled"] = Count.n
    except Exception as exc:
        out = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out), flush=True)
"""

FIRST = ["Zorvath", "Quellin", "Marbeck", "Tessaly", "Orrin", "Vadeline", "Kestrin", "Aldous", "Brannoch", "Ilsabet"]
LAST = ["Pellworth", "Dunmarrow", "Caskbridge", "Holloway", "Ferrant", "Greyhame", "Tolliver", "Ashcombe"]
CITIES = ["Lisbon", "Krakow", "Valparaiso", "Tromso", "Antwerp", "Cusco", "Bergen", "Lyon"]


class Agent:
    def __init__(self, store: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", AGENT, str(store)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)

    def __call__(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read()
        out = json.loads(line)
        assert "error" not in out, (cmd, out["error"])
        return out

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def document(n: int, rng: random.Random) -> dict:
    person = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    marker = f"zq{n:04d}marker"
    text = (f"{person} founded the {rng.choice(LAST)} Society in {rng.choice(CITIES)} in {1800 + n}. "
            f"The society kept the ledger {marker}. {person} later moved to {rng.choice(CITIES)}.")
    return {"id": f"doc-{n}", "title": f"{person} ({n})", "text": text, "person": person, "marker": marker}


def test_two_long_lived_writers_take_turns(tmp_path):
    """Each process holds its Memory throughout; each writes on top of the other's writes,
    then sees the other's documents, and the store checks clean after every round."""
    rng = random.Random(int(os.environ.get("KGMEM_TEST_SEED", "13")))
    store = tmp_path / "s"
    with Memory(store):
        pass
    agents = [Agent(store), Agent(store)]
    live: list[dict] = []
    try:
        for n in range(int(os.environ.get("KGMEM_TEST_ROUNDS", "120"))):
            me, other = agents[n % 2], agents[(n + 1) % 2]
            doc = document(n, rng)
            assert me(op="ingest", doc={k: doc[k] for k in ("id", "title", "text")})["added"] == 1
            live.append(doc)
            if n % 3 == 2:  # delete one of the other's (or an old) documents, chosen at random
                gone = live.pop(rng.randrange(len(live) - 1))
                assert me(op="delete", id=gone["id"])["removed"] >= 1
            # the other process builds its graph view and ranking from what it had, then
            # sees the new document through every retriever
            other(op="neighbors", name=doc["person"])
            mode = ("lexical", "dense", "auto", "graph")[n % 4]
            found = other(op="search", q=doc["text"], mode=mode)["ids"]
            assert doc["id"] in found, (n, mode, found)
            for agent in agents:
                state = agent(op="check")
                assert state["problems"] == [], (n, state)
                assert state["documents"] == len(live)
        # nobody re-embedded the other's chunks: each reloaded the vectors it did not write
        assert [a(op="check")["reconciled"] for a in agents] == [0, 0]
    finally:
        for agent in agents:
            agent.close()
    with Memory(store) as mem:
        assert mem.check() == []
        assert sorted(mem.passages.sql.document_ids()) == sorted(d["id"] for d in live)
        assert mem.stats()["vectors"] == mem.stats()["chunks"]


def test_check_during_a_live_ingest_reports_no_false_problem(tmp_path, wiki_records):
    # the vector file lags SQLite from the first batch's commit to the end of the ingest
    store, writer = store_and_writer(tmp_path, wiki_records, 10, ENV)
    reports = []
    with Memory(store) as mem:
        while writer.poll() is None:
            reports.append(mem.check_report())
    writer.communicate(timeout=60)
    assert writer.returncode == 0
    assert all(r.problems == [] for r in reports), [r.problems for r in reports if r.problems][:3]
    during = [r for r in reports if r.note]
    assert during, f"no check ran while the writer's vectors lagged ({len(reports)} checks)"
    assert "another process" in during[0].note
    with Memory(store) as mem:
        assert mem.check_report().note is None and mem.check() == []
