"""`kgmem mcp`: the official MCP SDK's client starts the server over stdio, lists its
tools and calls each one on a real store."""
from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("mcp")
from mcp import Client, StdioServerParameters  # noqa: E402

from kgmem import Memory  # noqa: E402

TOOLS = {"search", "ask", "ingest_text", "get_document", "list_documents", "delete_document", "graph_neighbors",
         "stats", "remember", "recall", "forget"}
APA = "Who was the first president of the American Psychological Association?"


@pytest.fixture(scope="module")
def mcp_store(tmp_path_factory, embedder, extractor, wiki_records) -> Path:
    store = tmp_path_factory.mktemp("mcp") / "store"
    with Memory(store, embedder=embedder, extractor=extractor) as mem:
        mem.ingest(wiki_records[:60])
    return store


def _params(store: Path) -> StdioServerParameters:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KGMEM_THREADS": "1"}
    return StdioServerParameters(command=sys.executable, args=["-m", "kgmem", "mcp", "--store", str(store),
                                                               "--llm", "extractive"], env=env)


def _data(result) -> dict:
    assert not result.is_error, result.content
    return result.structured_content or json.loads(result.content[0].text)


async def _session(store: Path) -> dict:
    out: dict = {}
    async with Client(_params(store), read_timeout_seconds=120) as client:
        listed = await client.list_tools()
        out["tools"] = {t.name: t for t in listed.tools}
        call = client.call_tool
        out["search"] = _data(await call("search", {"query": "American Psychological Association", "k": 3}))
        out["ask"] = _data(await call("ask", {"question": APA}))
        out["ingest"] = _data(await call("ingest_text", {
            "text": "Ada Okafor founded the Lagos Robotics Guild in 2011. The guild meets in Yaba.",
            "title": "Guild notes", "id": "guild-notes"}))
        out["found_new"] = _data(await call("search", {"query": "Lagos Robotics Guild", "k": 1, "mode": "lexical"}))
        out["get"] = _data(await call("get_document", {"id": "guild-notes", "start": 4, "max_chars": 6}))
        out["list"] = _data(await call("list_documents", {"limit": 5}))
        out["neighbors"] = _data(await call("graph_neighbors", {"entity": "Lagos Robotics Guild"}))
        out["stats"] = _data(await call("stats", {}))
        out["delete"] = _data(await call("delete_document", {"id": "guild-notes"}))
        out["missing"] = await call("get_document", {"id": "guild-notes"})
        out["bad_k"] = await call("search", {"query": "x", "k": 0})
        out["gone"] = _data(await call("search", {"query": "Lagos Robotics Guild", "k": 3, "mode": "lexical"}))
        session = [{"speaker": "Ada", "text": "I flew to Accra yesterday for the robotics fair."},
                   {"speaker": "Kofi", "text": "Did the guild's rover win anything there?"}]
        out["remember"] = _data(await call("remember", {"messages": session, "conversation": "ada-kofi",
                                                        "at": "2024-03-10T09:30"}))
        out["recall"] = _data(await call("recall", {"query": "When did Ada fly to Accra?", "conversation": "ada-kofi",
                                                    "k": 1}))
        out["forget"] = _data(await call("forget", {"conversation": "ada-kofi"}))
        out["recall_after"] = _data(await call("recall", {"query": "Accra", "conversation": "ada-kofi"}))
    return out


def test_every_tool_over_stdio_with_the_sdk_client(mcp_store):
    out = asyncio.run(_session(mcp_store))
    tools = out["tools"]
    assert TOOLS <= set(tools)
    for name in TOOLS:  # typed parameters, a description, a typed result
        assert tools[name].description and tools[name].input_schema["type"] == "object"
        assert tools[name].output_schema is not None
    assert tools["search"].input_schema["properties"]["mode"]["enum"][0] == "auto"
    assert tools["search"].annotations.read_only_hint and tools["delete_document"].annotations.destructive_hint

    hits = out["search"]["hits"]
    assert len(hits) == 3 and all(h["doc_id"] and h["end"] > h["start"] for h in hits)
    ans = out["ask"]
    assert ans["found"] and ans["citations"]
    doc = Memory(mcp_store, read_only=True)
    try:
        for c in ans["citations"]:  # spans an agent can cite: the quote is the document's text there
            assert doc.get(c["doc_id"]).text[c["start"]:c["end"]] == c["quote"]
    finally:
        doc.close()

    assert out["ingest"]["ids"] == ["guild-notes"] and out["ingest"]["added"] == 1
    assert out["found_new"]["hits"][0]["doc_id"] == "guild-notes"
    assert out["get"]["text"] == "Okafor" and out["get"]["chars"] > 60
    assert out["list"]["total"] == 61 and len(out["list"]["documents"]) == 5
    facts = out["neighbors"]["facts"]
    assert out["neighbors"]["entity"] == "Lagos Robotics Guild" and facts
    assert all(c["doc_id"] == "guild-notes" for f in facts for c in f["citations"])
    assert out["stats"]["documents"] == 61 and out["stats"]["entities"] > 0
    assert out["delete"]["chunks"] >= 1
    assert out["missing"].is_error and "no document with id 'guild-notes'" in out["missing"].content[0].text
    assert out["bad_k"].is_error
    assert all(h["doc_id"] != "guild-notes" for h in out["gone"]["hits"])
    assert out["remember"]["added"] == 2 and len(out["remember"]["ids"]) == 2
    turn = out["recall"]["turns"][0]
    assert turn["speaker"] == "Ada" and turn["at"] == "2024-03-10T09:30:00"
    assert turn["dates"][0]["value"] == "9 March 2024" and turn["context"][0]["speaker"] == "Kofi"
    assert out["forget"]["forgotten"] == 2 and out["recall_after"]["turns"] == []


async def _over_http(url: str) -> tuple[set[str], dict]:
    async with Client(url, read_timeout_seconds=120) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        return names, _data(await client.call_tool("search", {"query": "Journal of Psychotherapy Integration",
                                                              "k": 2}))


def test_streamable_http_transport_on_loopback(mcp_store, tmp_path):
    import subprocess
    import time

    import httpx

    from .conftest import free_port

    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KGMEM_THREADS": "1"}
    log = open(tmp_path / "mcp.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "kgmem", "mcp", "--http", "--port", str(port), "--store",
                             str(mcp_store), "--llm", "extractive"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None and time.time() < deadline, log.seek(0) or log.read()
            try:
                httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.3)
        names, found = asyncio.run(_over_http(f"http://127.0.0.1:{port}/mcp"))
        assert TOOLS <= names
        assert found["hits"][0]["title"] == "Journal of Psychotherapy Integration"
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    refused = subprocess.run([sys.executable, "-m", "kgmem", "mcp", "--http", "--host", "0.0.0.0", "--store",
                              str(mcp_store)], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "loopback only" in refused.stderr
