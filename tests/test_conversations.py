"""Conversation memory: remember turns with their time and speaker (no LLM), recall them
by conversation, user and time, forget exactly; documents and turns never mix."""
from __future__ import annotations

from datetime import date, datetime

import pytest

from kgmem import Memory
from kgmem.errors import NotFoundError
from kgmem.pipelines.dates import parse_when, resolve_dates

MAY_8 = "1:56 pm on 8 May, 2023"
SESSION_1 = [
    {"id": "c1:1", "speaker": "Caroline", "text": "Hey Mel! I went to a LGBTQ support group yesterday."},
    {"id": "c1:2", "speaker": "Melanie", "text": "That's great! I painted a sunrise last Friday."},
    {"id": "c1:3", "speaker": "Caroline", "text": "Lovely. We moved to Boston two years ago, remember?"},
]
SESSION_2 = [
    {"speaker": "Caroline", "text": "Big news: I moved to Denver last month for a new job."},
    {"speaker": "Melanie", "text": "Wow, Denver! How is the new job at the clinic?", "image_caption": "a mountain"},
]


@pytest.mark.parametrize("said, value, day", [
    ("yesterday", "7 May 2023", "2023-05-07"),
    ("last Friday", "5 May 2023", "2023-05-05"),
    ("3 days ago", "5 May 2023", "2023-05-05"),
    ("two years ago", "2021", None),
    ("last month", "April 2023", None),
    ("next year", "2024", None),
    ("last week", "the week before 8 May 2023", None),
    ("tomorrow", "9 May 2023", "2023-05-09"),
])
def test_relative_times_are_resolved_against_when_they_were_said(said, value, day):
    found = resolve_dates(f"It was {said}, I think.", parse_when(MAY_8))
    assert [(d.text, d.value, d.day) for d in found] == [(said, value, day)]
    assert resolve_dates(f"It was {said}.", None) == []


def test_session_times_in_the_forms_people_write_them():
    assert parse_when(MAY_8) == datetime(2023, 5, 8, 13, 56)
    assert parse_when("2023-05-25T13:14") == datetime(2023, 5, 25, 13, 14)
    assert parse_when(date(2023, 6, 9)) == datetime(2023, 6, 9)
    with pytest.raises(ValueError, match="cannot read the time"):
        parse_when("the other day")


def test_remember_recall_forget(memory: Memory):
    first = memory.remember(SESSION_1, conversation="c1", user="caroline", at=MAY_8)
    assert first.added == 3 and first.ids == ["c1:1", "c1:2", "c1:3"]
    again = memory.remember(SESSION_1, conversation="c1", user="caroline", at=MAY_8)
    assert again.added == 0 and again.unchanged == 3  # re-sending a session adds nothing
    second = memory.remember(SESSION_2, conversation="c1", user="caroline", at="2023-06-20T10:00")
    assert second.added == 2 and all(i.startswith("c1:") for i in second.ids)
    assert memory.remember(SESSION_2, conversation="c1", user="caroline", at="2023-06-20T10:00").added == 0

    top = memory.recall("When did Caroline go to the support group?", conversation="c1", k=3)
    assert top[0].id == "c1:1" and top[0].speaker == "Caroline" and top[0].at == "2023-05-08T13:56:00"
    assert top[0].text == SESSION_1[0]["text"]
    assert top[0].dates == [{"start": 41, "end": 50, "text": "yesterday", "value": "7 May 2023",
                             "day": "2023-05-07"}]
    assert [c["id"] for c in top[0].context] == ["c1:2"]  # the turn after it (it opened the session)

    # change over time: both places stay, each with its time
    moves = memory.recall("Where does Caroline live? moved", conversation="c1", k=5)
    where = {r.id: r.at for r in moves}
    assert "c1:3" in where and any("Denver" in r.text for r in moves)
    assert max(moves, key=lambda r: r.at).text.startswith("Big news: I moved to Denver")

    june = memory.recall("moved", conversation="c1", since="2023-06-01")
    assert june and all(r.at >= "2023-06-01" for r in june)
    assert memory.recall("moved", conversation="c1", until="2023-05-31")[0].id == "c1:3"

    memory.ingest([{"id": "doc-1", "title": "Denver", "text": "Denver is the capital of Colorado."}])
    assert all(h.doc_id == "doc-1" for h in memory.search("Denver moved new job", k=10))  # no turn leaks
    assert all(r.conversation == "c1" for r in memory.recall("Denver capital Colorado", conversation="c1"))
    assert memory.stats()["documents"] == 1

    memory.remember([{"speaker": "Ana", "text": "I adopted a cat named Denver."}], conversation="c2", user="ana",
                    at="2023-07-01")
    assert all(r.conversation == "c2" for r in memory.recall("Denver", conversation="c2"))
    assert {r.conversation for r in memory.recall("Denver", user="caroline")} == {"c1"}

    assert memory.forget(turns=["c1:2"]) == 1
    assert "c1:2" not in {r.id for r in memory.recall("painted a sunrise", conversation="c1", k=10)}
    with pytest.raises(NotFoundError):
        memory.forget(turns=["c1:2"])
    assert memory.forget(conversation="c1") == 4
    assert memory.recall("Denver", conversation="c1") == []
    assert memory.forget(user="ana") == 1
    assert memory.conversations.memory().check() == [] and memory.check() == []


def test_bad_messages_are_one_clear_error(memory: Memory):
    with pytest.raises(ValueError, match=r"messages\[1\].text"):
        memory.remember([{"speaker": "A", "text": "hi"}, {"speaker": "B"}], conversation="c")
    with pytest.raises(ValueError, match="conversation"):
        memory.remember([{"speaker": "A", "text": "hi"}], conversation="a/b")
    with pytest.raises(ValueError, match="needs a conversation, a user or turn ids"):
        memory.forget()
    assert memory.recall("anything", conversation="never") == []


def test_ask_from_what_was_said_cites_turns_and_dates_relative_answers(memory: Memory):
    """With the local model: Qwen2.5-1.5B."""
    from kgmem.conversations.turns import absolute
    from kgmem.pipelines.llm import models

    if not models.installed():
        pytest.skip("the local model is not installed (make install installs it)")
    memory.remember(SESSION_1, conversation="c1", user="caroline", at=MAY_8)
    memory.ingest([{"id": "doc-1", "title": "Sunrise", "text": "Melanie painted a sunset over the bay."}])
    ans = memory.ask("What did Melanie paint?", conversation="c1", llm="llama")
    assert ans.found and "sunrise" in ans.short and ans.citations
    turns = memory.conversations.memory()
    for c in ans.citations:  # cited to a turn of c1, never to the document
        assert c.doc_id == "c1/c1:2" and turns.get(c.doc_id).text[c.start:c.end] == c.quote
    # A model that answers with the relative time the cited turn holds gets the date it means.
    recalled = memory.recall("Melanie painted a sunrise", conversation="c1", k=3)
    ans.short, ans.text = "last Friday", f"last Friday [{ans.citations[0].n}]"
    fixed = absolute(ans, recalled)
    assert fixed.short == "5 May 2023" and fixed.text.startswith("5 May 2023 [")
    unknown = memory.ask("What is Caroline's favourite programming language?", conversation="empty-chat",
                         llm="llama")
    assert not unknown.found and unknown.citations == []


def test_the_no_llm_reader_answers_when_with_the_time_a_turn_means(memory: Memory):
    """A "when" question is answered with the time the turn states, resolved ("yesterday" said
    on 8 May: 7 May 2023), or, when it states none, the day it was said (the reader had only
    the words spaCy tagged and answered "Tues" or "concert")."""
    memory.remember(SESSION_1, conversation="c1", user="caroline", at=MAY_8)
    memory.remember(SESSION_2, conversation="c1", user="caroline", at="2:00 pm on 9 June, 2023")
    went = memory.ask("When did Caroline go to the LGBTQ support group?", conversation="c1", llm="extractive")
    assert went.found and went.short == "7 May 2023" and went.citations[0].doc_id == "c1/c1:1"
    painted = memory.ask("When did Melanie paint a sunrise?", conversation="c1", llm="extractive")
    assert painted.short == "5 May 2023"
    asked = memory.ask("When did Melanie ask about the new job at the clinic?", conversation="c1", llm="extractive")
    assert asked.short == "9 June 2023"


def test_the_no_llm_reader_answers_from_what_was_said(memory: Memory):
    """The reader's candidates are what spaCy found in the recalled turns (it had none and
    declined every question on dialogue)."""
    memory.remember(SESSION_1, conversation="c1", user="caroline", at=MAY_8)
    memory.remember(SESSION_2, conversation="c1", user="caroline", at="2:00 pm on 9 June, 2023")
    ans = memory.ask("Where did Caroline move to for a new job?", conversation="c1", llm="extractive")
    assert ans.found and ans.short == "Denver" and ans.citations
    turns = memory.conversations.memory()
    quote = ans.citations[0]
    assert turns.get(quote.doc_id).text[quote.start:quote.end] == quote.quote and "Denver" in quote.quote
