"""OpenAI's chat API on a real `kgmem serve` (loopback, with a token), driven by the official
`openai` SDK; and kgmem's own `openai:` backend end to end against that server."""
from __future__ import annotations

import httpx
import openai
import pytest

from kgmem import Memory

# (facts of their own: the served store is shared with test_http, whose records differ)
RECORDS = [
    {"id": "oa-1", "title": "Lake Malawi Steamer Line", "text": "The Lake Malawi Steamer Line was founded by "
     "Chikondi Banda in 1987. Its steamers sail from Monkey Bay to Nkhata Bay."},
    {"id": "oa-2", "title": "Chikondi Banda", "text": "Chikondi Banda is a Malawian engineer who studied "
     "marine engines in Blantyre."},
]
QUESTION = "Who founded the Lake Malawi Steamer Line?"


@pytest.fixture(scope="module")
def client(served):
    assert served.client.post("/ingest", json={"records": RECORDS}).status_code == 200
    with openai.OpenAI(base_url=f"{served.url}/v1", api_key=served.token, max_retries=0, timeout=300) as c:
        yield c


def test_models_lists_kgmem(client):
    assert [m.id for m in client.models.list().data] == ["kgmem"]


def test_a_completion_answers_from_memory_with_its_sources(client, served):
    done = client.chat.completions.create(model="kgmem", messages=[{"role": "user", "content": QUESTION}],
                                          temperature=0.3, max_tokens=50)
    assert done.object == "chat.completion" and done.choices[0].finish_reason == "stop"
    kg = done.model_extra["kgmem"]
    content = done.choices[0].message.content
    assert done.choices[0].message.role == "assistant" and content.startswith(kg["answer"])
    assert any(p["doc_id"] == "oa-1" for p in kg["passages"])  # the founding passage was retrieved
    for cit in kg["citations"]:  # each source is listed under the answer, and resolves to its span
        assert f"[{cit['n']}] " in content.split("Sources:")[1] and cit["doc_id"] in content
        doc = served.client.get(f"/documents/{cit['doc_id']}").json()
        assert doc["text"][cit["start"]:cit["end"]] == cit["quote"]
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens


def test_a_streamed_completion_sends_the_same_answer_in_chunks(client):
    stream = client.chat.completions.create(model="kgmem", stream=True,
                                            messages=[{"role": "system", "content": "Be brief."},
                                                      {"role": "user", "content": QUESTION}])
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    kg = chunks[-1].model_extra["kgmem"]
    assert kg["question"] == QUESTION and kg["answer"] in text  # the tokens, then the markers (or the answer)
    assert ("Sources:" in text) == bool(kg["citations"])
    assert text.endswith(text[text.index(kg["answer"]):])  # the answer with its markers, then the sources


def test_a_request_naming_a_user_remembers_the_chat_once_and_answers_from_it(client, served):
    history = [{"role": "user", "content": "My sister Alice moved to Lisbon last spring."},
               {"role": "assistant", "content": "Noted: Alice lives in Lisbon."},
               {"role": "user", "content": "Where does my sister live?"}]
    for _ in range(2):  # a client re-sends the whole chat every time: it is remembered once
        done = client.chat.completions.create(model="kgmem", messages=history, user="dana")
    turns = served.client.get("/recall", params={"q": "sister Lisbon", "user": "dana"}).json()["turns"]
    said = [t["text"] for t in turns]
    assert said.count("My sister Alice moved to Lisbon last spring.") == 1
    assert "Where does my sister live?" not in said  # the question asked is not a memory
    assert any("Lisbon" in p["text"] for p in done.model_extra["kgmem"]["passages"])


def test_errors_come_in_openai_shape(client, served):
    # the API's own status table: 422 for a request that is wrong (as on /ask), 401 without the token
    with pytest.raises(openai.UnprocessableEntityError) as bad:
        client.chat.completions.create(model="kgmem", messages=[{"role": "system", "content": "hi"}])
    assert "no message with role 'user'" in str(bad.value)
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="kgmem", messages=[])
    with openai.OpenAI(base_url=f"{served.url}/v1", api_key="wrong", max_retries=0) as anonymous:
        with pytest.raises(openai.AuthenticationError):
            anonymous.models.list()
    body = httpx.post(f"{served.url}/v1/chat/completions", headers={"Authorization": f"Bearer {served.token}"},
                      json={"messages": [{"role": "user", "content": "  "}]}).json()
    assert body["error"]["type"] == "invalid_request_error" and "no text" in body["error"]["message"]


def test_kgmems_openai_backend_answers_through_a_real_openai_compatible_server(served, tmp_path, monkeypatch,
                                                                               embedder, extractor):
    """`--llm openai:MODEL` end to end: a second store whose answers come from the server above."""
    monkeypatch.setenv("KGMEM_LLM_BASE_URL", f"{served.url}/v1")
    monkeypatch.setenv("KGMEM_LLM_API_KEY", served.token)
    with Memory(tmp_path / "store", embedder=embedder, extractor=extractor) as mem:
        mem.ingest(RECORDS)
        ans = mem.ask(QUESTION, llm="openai:kgmem")
    assert ans.backend == "openai:kgmem" and ans.text.strip()
    assert ans.passages and ans.passages[0].doc_id in {"oa-1", "oa-2"}
