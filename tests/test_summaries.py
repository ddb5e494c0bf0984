"""Communities, summaries and global questions on a small real meeting and real articles:
communities kept up to date after ingest, change and delete; every summary sentence
cited; the no-LLM path; the CLI and REPL commands; a global question from cached
community summaries; and one run with the local model."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from kgmem import Memory
from kgmem.pipelines.llm.base import ChatBackend, ChatResult
from kgmem.repl import Repl

MEETING = "\n".join([
    "Anna: Good morning everyone. Today we decide on the remote control design and the budget.",
    "Ben: I looked at the battery. A rechargeable lithium battery lasts two weeks, but it costs more.",
    "Anna: How much more does the lithium battery cost than normal batteries?",
    "Ben: About four euros per unit. The charging dock adds another three euros to the production cost.",
    "Carla: Customers told us in the survey that they lose the remote control all the time.",
    "Carla: The survey says younger customers want a remote control that looks fancy, with soft rubber.",
    "Ben: A rubber case is cheap. The rubber case also protects the remote control when it falls.",
    "Anna: Then the rubber case stays in the design. What about the buttons?",
    "Carla: The survey shows people only use four buttons: power, volume, channel and the menu.",
    "Ben: Fewer buttons make the circuit board simpler, so the production cost goes down.",
    "Anna: Let us move to the marketing plan. The marketing campaign starts in March in Germany.",
    "Carla: The marketing campaign should show the remote control in a modern living room.",
    "Anna: The television advertisement costs most of the marketing budget.",
    "Ben: Online advertisement is cheaper than the television advertisement and reaches younger customers.",
    "Anna: So the marketing campaign uses online advertisement first, and television later.",
    "Carla: I will write the marketing plan for March and send it to the whole team on Friday.",
    "Anna: To sum up, we keep the lithium battery, the rubber case and four buttons.",
    "Anna: The production cost must stay under twelve euros. Thank you all, see you on Friday.",
])


def sentences_of(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


@pytest.fixture
def meeting(memory: Memory, wiki_records) -> Memory:
    memory.ingest([{"id": "meeting", "title": "Remote control design meeting", "text": MEETING}, *wiki_records[:12]])
    return memory


def test_communities_follow_ingest_change_and_delete(meeting: Memory, wiki_records):
    comms = meeting.communities()
    level0 = [c for c in comms if c.level == 0]
    chunk_ids = {r[0] for r in meeting.passages.sql.conn.execute("SELECT id FROM chunks")}
    members = [cid for c in level0 for cid in c.chunks]
    assert sorted(members) == sorted(chunk_ids)  # every passage in exactly one level-0 community
    assert all(c.parent is not None for c in level0)
    parents = {c.id: c for c in comms if c.level == 1}
    assert {c.parent for c in level0} == set(parents)
    assert all(c.top for c in level0 if meeting.passages.sql.conn.execute(
        "SELECT count(*) FROM mentions m JOIN community_chunks cc ON cc.chunk_id = m.chunk_id "
        "WHERE cc.community_id = ?", (c.id,)).fetchone()[0])
    before = {c.id: c.key for c in level0}

    meeting.ingest([wiki_records[20]])  # a new document: only it is clustered
    report = meeting.overview.update()
    assert report.documents == 1
    after = {c.id: c.key for c in meeting.communities(level=0)}
    assert set(before) <= set(after)  # the old documents' communities were left alone
    new = [c for c in meeting.communities(level=0) if c.id not in before]
    assert new and {c.doc_id for c in new} == {wiki_records[20]["id"]}

    old_meeting = {c.key for c in meeting.communities(level=0, doc_id="meeting")}
    meeting.ingest([{"id": "meeting", "title": "Remote control design meeting",
                     "text": MEETING.replace("March", "April")}])  # a change: new keys
    changed = {c.key for c in meeting.communities(level=0, doc_id="meeting")}
    assert changed and not changed & old_meeting

    meeting.delete(wiki_records[20]["id"])
    left = meeting.communities()
    assert not [c for c in left if c.doc_id == wiki_records[20]["id"]]
    kids = {k for c in left if c.level == 1 for k in c.children}
    assert kids == {c.id for c in left if c.level == 0}


def test_extractive_summary_cites_every_sentence(meeting: Memory):
    doc = meeting.get("meeting")
    summary = meeting.summarize("meeting", words=60, llm="extractive")
    assert summary.backend == "extractive" and summary.tokens_read == 0
    assert 30 <= summary.words <= 75
    sents = sentences_of(summary.text)
    assert len(sents) >= 3 and all(re.search(r"\[\d+\][.!?]?$", s) for s in sents)
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", summary.text)}
    assert cited == {c.n for c in summary.citations}
    for c in summary.citations:
        assert c.doc_id == "meeting"
        first = c.quote.split(" … ")[0]
        assert first.split()[1] in doc.text[c.start : c.end]  # the quote stands where it says
    # Graph-centred, not the first sentences: the summary reaches the end of the meeting.
    assert any(w in summary.text for w in ("marketing", "twelve euros", "advertisement"))
    assert not summary.text.startswith("Good morning")


def test_a_query_summary_reads_the_part_it_asks_about(meeting: Memory):
    summary = meeting.summarize("meeting", query="What was decided about the marketing campaign?", words=40,
                                llm="extractive")
    assert "marketing" in summary.text.lower() or "advertisement" in summary.text.lower()
    assert all("meeting" == c.doc_id for c in summary.citations)
    with pytest.raises(Exception, match="no document"):
        meeting.summarize("no-such-doc", llm="extractive")


def test_global_question_uses_cached_community_summaries(meeting: Memory):
    first = meeting.ask("What are the main themes of these documents?", llm="extractive")
    assert first.found and first.citations and first.context is None
    assert re.search(r"from \d+ community summaries \(0 from the cache\)", first.notices[0])
    again = meeting.ask("Give me an overview of the whole collection", llm="extractive")
    n = int(re.search(r"from (\d+) community", again.notices[0]).group(1))
    assert f"({n} from the cache)" in again.notices[0]
    for c in again.citations:  # each citation resolves to a stored passage
        assert c.quote in meeting.passages.chunks([c.chunk_id])[c.chunk_id].text
    plain = meeting.ask("Which company makes the remote control?", llm="extractive")
    assert plain.context is not None  # not a global question: the usual path


def test_summarize_and_communities_commands(meeting: Memory, tmp_path):
    store = str(meeting.path)
    meeting.close()
    run = [sys.executable, "-m", "kgmem"]
    out = subprocess.run([*run, "summarize", "meeting", "--store", store, "--llm", "extractive", "--words", "50"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Sources:" in out.stdout and "[1]" in out.stdout and "chose the sentences" in out.stderr
    js = subprocess.run([*run, "graph", "--communities", "--json", "--store", store],
                        capture_output=True, text=True, timeout=300)
    data = json.loads(js.stdout)
    assert data["total"] >= 2 and any(c["doc_id"] == "meeting" for c in data["communities"])
    bad = subprocess.run([*run, "summarize", "nope", "--store", store, "--llm", "extractive"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and bad.stderr.strip() == "Error: no document with id 'nope'"


def test_repl_summarize_shows_progress(meeting: Memory):
    out: list[str] = []
    repl = Repl(meeting, llm="extractive", write=out.append)
    repl.handle(":summarize meeting")
    repl.handle(":communities")
    text = "".join(out)
    assert "chose the sentences" in text and "done in" in text and "Sources:" in text
    assert "level 0" in text and "level 1" in text


@pytest.mark.slow
def test_model_summary_every_sentence_cited(meeting: Memory):
    pytest.importorskip("xllamacpp")
    steps = []
    summary = meeting.summarize("meeting", words=60, llm="llama", on_progress=steps.append)
    assert summary.backend.startswith("llama") and summary.tokens_read > 0
    sents = sentences_of(summary.text)
    assert sents and all(re.search(r"\[\d+\]", s) for s in sents)
    assert {c.n for c in summary.citations} == {int(n) for n in re.findall(r"\[(\d+)\]", summary.text)}
    assert steps[0].stage == "select" and steps[-1].stage == "done"


class PromptRecorder(ChatBackend):
    """Records what a summary asks the model and writes one cited sentence: the prompt's
    logic only (the real model writes a summary in test_model_summary_every_sentence_cited)."""

    name = "recorder"
    context_window = 4096

    def __init__(self):
        self.calls: list[tuple[str, bool]] = []

    def chat(self, messages, max_tokens, schema=None, on_delta=None, no_repeat=False) -> ChatResult:
        self.calls.append((messages[-1]["content"], no_repeat))
        return ChatResult("The team keeps the rubber case [1].", prompt_tokens=len(messages[-1]["content"].split()))

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def test_a_transcript_is_summarised_as_a_meeting(meeting: Memory, wiki_records):
    """A whole transcript is asked for as the meeting it records (what it was about, then
    its points in order, and its decisions), with the no-repeat sampler; a query about part
    of it with plain decoding; a text without speakers as a text."""
    model = PromptRecorder()
    meeting.summarize("meeting", words=60, llm=model)
    prompt, no_repeat = model.calls[-1]
    assert "Anna: " in prompt and "summary of the whole meeting" in prompt and no_repeat
    assert "what the meeting was about" in prompt
    meeting.summarize("meeting", query="What did they decide about the battery?", words=40, llm=model)
    prompt, no_repeat = model.calls[-1]
    assert "about: What did they decide about the battery?" in prompt and not no_repeat
    assert "was about" not in prompt
    meeting.summarize(wiki_records[0]["id"], words=60, llm=model)
    prompt, no_repeat = model.calls[-1]
    assert "summary of the whole text" in prompt and "what the text was about" in prompt


def test_excerpts_name_a_speaker_where_the_turn_changes_and_no_anonymised_one(meeting: Memory):
    """The model reads excerpts as a transcript shows them: a speaker's name where the turn
    changes, not before each sentence; a transcript's anonymised speakers ("Grad A",
    "Professor B") not at all: they name no one, and the model listed them ("1. PhD D
    proposed …")."""
    model = PromptRecorder()
    meeting.summarize("meeting", words=60, llm=model)
    excerpts = [line for line in model.calls[-1][0].splitlines() if re.match(r"\[\d+\] ", line)]
    assert excerpts and all(re.match(r"\[\d+\] (Anna|Ben|Carla): ", line) for line in excerpts)
    for line in excerpts:
        said = re.findall(r"(?:^\[\d+\] |(?<=[.!?] ))(Anna|Ben|Carla): ", line)
        assert all(a != b for a, b in zip(said, said[1:]))  # a name only where the turn changes
    assert any(len(re.findall(r"[.!?](?= |$)", line)) > len(re.findall(r"(Anna|Ben|Carla): ", line))
               for line in excerpts)  # some turn goes on past its first sentence, unlabelled
    anonymised = "\n".join(line.replace("Anna:", "Grad A:").replace("Ben:", "Professor B:")
                           .replace("Carla:", "PhD C:") for line in MEETING.splitlines())
    meeting.ingest([{"id": "icsi", "title": "Meeting Qx017", "text": anonymised}])
    meeting.summarize("icsi", words=60, llm=model)
    prompt = model.calls[-1][0]
    assert "summary of the whole meeting" in prompt  # still a meeting of three speakers
    assert "rubber case" in prompt and not re.search(r"Grad A|Professor B|PhD C", prompt)


def test_an_empty_store_summarises_to_nothing_with_a_notice(memory: Memory):
    summary = memory.summarize(llm="extractive")
    assert summary.text == "" and summary.citations == [] and summary.notices
    assert memory.communities() == []
    with pytest.raises(ValueError, match="at least 10 words"):
        memory.summarize(words=3, llm="extractive")


def test_a_documents_unnamed_subject_weighs_no_sentence(memory):
    """The title of a document whose text never names it is a zero-width mention of each
    chunk: it belongs to the chunk, not to the chunk's first sentence."""
    from kgmem.pipelines.summarize import Summarizer

    text = ("Grad A: OK, we're recording now. Professor B: The parser crashed again on the long files. "
            "Grad A: I rewrote the tokenizer last week and the memory use went down by half. "
            "Professor B: Then we should run the whole corpus through it before Friday.")
    memory.ingest([{"id": "m1", "title": "Meeting Qx017", "text": text}])
    subject = memory.graph.resolve("Meeting Qx017")
    assert subject is not None  # the title is the document's subject entity
    chunks = list(memory.passages.chunks(memory.passages.sql.chunk_ids()).values())
    zero_width = [m for rows in memory.graph.mentions_in([c.id for c in chunks]).values()
                  for m in rows if m[3] == subject]
    assert zero_width and all(start == end for start, end, _, _ in zero_width)
    summarizer = Summarizer(memory.passages, memory.graph, memory.overview.store)
    sents, _ = summarizer.sentences(chunks, None)
    assert len(sents) >= 3 and any(s.entities for s in sents)
    assert all(subject not in s.entities for s in sents)
