"""Following a multi-hop question one hop at a time (pipelines/hops.py): the question's
innermost phrase read from spaCy's parse, answered by the no-LLM reader, replaced, searched."""
from __future__ import annotations

import pytest

from kgmem.graph.knowledge import Citation, Fact
from kgmem.memory.passages import stopwords
from kgmem.pipelines.hops import (
    Hop,
    answered_a_step,
    bridge_facts,
    echoes,
    follow,
    inner_phrase,
    merge,
    relation_words,
)
from kgmem.render import answer_text
from kgmem.retrieval.packer import Packer, asking
from kgmem.retrieval.types import Hit

AUSTRIA = "Who was in charge of the country where the composer of Aschenbrodel was a citizen?"


@pytest.fixture(scope="module")
def parse(extractor):
    return extractor.nlp


def phrase_of(parse, question: str) -> str | None:
    doc = parse(question)
    found = inner_phrase(doc)
    return doc[found[0]:found[1]].text if found else None


def test_the_innermost_phrase_around_a_name_is_the_first_hop(parse):
    assert phrase_of(parse, AUSTRIA) == "the composer of Aschenbrodel"
    assert phrase_of(parse, "Who is the spouse of Big Eye's main director?") == "Big Eye's main director"
    assert phrase_of(parse, "In what county is the city where Harris W. Fawell was born?") == \
        "the city where Harris W. Fawell was born"


def test_a_phrase_that_is_the_question_or_holds_its_unknown_is_not_a_hop(parse):
    assert phrase_of(parse, "Who is the wife of Kim Jong-chul?") is None  # one hop: the question itself
    assert phrase_of(parse, "What is the capital of France?") is None
    assert phrase_of(parse, "How many books did the author write?") is None  # no name at all
    # "formed in what year" asks: the phrase holds the question's unknown
    assert phrase_of(parse, "The league includes the Adelaide team that was formed in what year?") is None


def test_each_hop_is_replaced_by_the_reader_s_answer(parse):
    answers = {"Which composer is the composer of Aschenbrodel?": "Johann Strauss II",
               "Which country is the country where Johann Strauss II was a citizen?": "Austria"}
    asked: list[str] = []

    def read(question: str) -> str | None:
        asked.append(question)
        return answers.get(question)

    hops = follow(AUSTRIA, parse, read, max_hops=3)
    assert [h.bridge for h in hops] == ["Johann Strauss II", "Austria"]
    assert hops[0].question == "Who was in charge of the country where Johann Strauss II was a citizen?"
    assert hops[1].question.startswith("Who was in charge of Austria")
    assert len(asked) == 2  # "Who was in charge of Austria?" is the question itself: no third hop
    assert follow(AUSTRIA, parse, read, max_hops=1)[-1].bridge == "Johann Strauss II"
    assert follow(AUSTRIA, parse, lambda q: None) == []  # the reader has no answer: no hop
    # an answer that only repeats the phrase leads nowhere
    assert follow(AUSTRIA, parse, lambda q: "Aschenbrodel") == []


def _hit(cid: int) -> Hit:
    return Hit(doc_id=f"d{cid}", chunk_id=cid, score=1.0, text="", title="", source="", start=0, end=0)


def test_merge_keeps_the_question_s_best_and_adds_each_hop_s_new_passages():
    base = [_hit(i) for i in (1, 2, 3, 4, 5, 6)]
    hop1 = [_hit(i) for i in (2, 7, 8, 9)]
    hop2 = [_hit(i) for i in (7, 10, 1, 11)]
    merged = merge(base, [hop1, hop2], k=8, keep=3, per_hop=2)
    assert [h.chunk_id for h in merged] == [1, 2, 3, 7, 8, 10, 11, 4]
    assert [h.chunk_id for h in merge(base, [], k=4)] == [1, 2, 3, 4]


def test_an_answer_that_is_a_hop_s_bridge_answered_a_step_not_the_question():
    hops = [Hop("the composer of Aschenbrodel", "Which composer is the composer of Aschenbrodel?", "Johann Strauss II",
                "Who was in charge of the country where Johann Strauss II was a citizen?"),
            Hop("the country where Johann Strauss II was a citizen", "…", "Austria", "Who was in charge of Austria?")]
    assert answered_a_step("johann strauss II.", hops) is hops[0]
    assert answered_a_step("the Austria", hops) is hops[1]
    assert answered_a_step("Karl Renner", hops) is None and answered_a_step("", hops) is None
    assert answered_a_step("Austria", []) is None


def test_an_answer_the_question_already_names_echoes_it_unless_the_question_offers_a_choice():
    question = "Who is the child of the person who ruled the country where Liang Ji is during the war?"
    assert echoes("Liang Ji", question) and echoes("the  liang ji.", question)
    assert not echoes("Deng Pufang", question) and not echoes("", question)
    assert not echoes("Sid Haig", "Who is the oldest, Sid Haig or Vic Darchinyan?")
    assert not echoes("Iain Banks", "Between Iain Banks and Irwin Shaw, which writer has had a more diverse career?")


def test_asking_another_question_changes_only_the_packed_prompt_s_last_line():
    hits = [Hit(doc_id=f"d{i}", chunk_id=i, score=1.0, text=f"Question: passage {i} is not the question.",
                title=f"Title {i}", source="", start=0, end=40) for i in range(3)]
    question = "Who was the first president of the association which published the Journal?"
    ctx = Packer(lambda text: len(text.split()), 1024, 64).pack(question, hits)
    again = asking(ctx, "Who was the first president of the\nAmerican Psychological Association?")
    head = ctx.user[: -len(question)]
    assert again.user == head + "Who was the first president of the American Psychological Association?"
    assert again.sources == ctx.sources and again.system == ctx.system and ctx.user.endswith(question)
    assert asking(again, question).user == ctx.user


def test_ask_follows_the_hops_to_the_passage_the_question_never_names(memory):
    memory.ingest([
        {"id": "aschenbrodel", "title": "Aschenbrödel",
         "text": "Aschenbrödel is a ballet in three acts by the composer Johann Strauss II. It was first "
                 "performed in Berlin in 1901, two years after the composer's death."},
        {"id": "strauss", "title": "Johann Strauss II",
         "text": "Johann Strauss II was a composer of light music, known as the Waltz King. He was born in "
                 "Vienna and was a citizen of Austria for most of his life, though he later became a "
                 "citizen of Saxe-Coburg and Gotha."},
        {"id": "austria", "title": "Austria",
         "text": "After the First World War, Austria was governed by Chancellor Karl Renner, who led the "
                 "provisional government of the new republic from 1918 to 1920."},
        {"id": "berlin", "title": "Berlin",
         "text": "Berlin is the capital of Germany. Its opera houses have staged ballets since the "
                 "eighteenth century, and the city was governed by a mayor."},
        {"id": "waltz", "title": "Waltz",
         "text": "The waltz is a ballroom dance in triple time. Composers in Vienna wrote waltzes for "
                 "balls held in the city during the carnival season."},
    ])
    memory.configure(search_k=4)
    followed = memory.ask(AUSTRIA, llm="extractive")
    assert [h.bridge for h in followed.hops][:1] == ["Johann Strauss II"]
    assert "austria" in {p.doc_id for p in followed.passages}
    assert memory.search(followed.hops[-1].question, k=1)[0].doc_id == "austria"
    assert followed.short == "Karl Renner"
    assert followed.as_dict()["hops"][0]["phrase"] == "the composer of Aschenbrodel"
    assert "followed: the composer of Aschenbrodel → Johann Strauss II" in answer_text(followed)
    memory.configure(hops=0)
    direct = memory.ask(AUSTRIA, llm="extractive")
    assert direct.hops == [] and "followed:" not in answer_text(direct)


APA_HOP = Hop("the association which published Journal of Psychotherapy Integration",
              "Which association is the association which published Journal of Psychotherapy Integration?",
              "American Psychological Association",
              "Who was the first president of American Psychological Association ?")


def test_the_bridge_s_facts_are_those_sharing_a_word_with_what_the_question_still_asks():
    want = relation_words(APA_HOP.question, APA_HOP.bridge, stopwords())
    assert want == {"presi"}  # not the bridge's own words, the wh-word or stopwords ("first")
    cite = [Citation("d1", 1, 0, 10)]
    facts = [Fact("American Psychological Association", "published", "Journal of Psychotherapy Integration", cite),
             Fact("American Psychological Association", "co_occurs", "First Lady", cite, kind="cooc"),
             Fact("G. Stanley Hall", "president_of", "American Psychological Association", cite, kind="copula")]
    assert [f.subject for f in bridge_facts(facts, want)] == ["G. Stanley Hall"]
    assert bridge_facts(facts, {"found"}) == []


def _hits(n: int) -> list[Hit]:
    return [Hit(doc_id=f"d{i}", chunk_id=i, score=1.0, text=" ".join(f"w{i}x{j}" for j in range(40)),
                title=f"Title {i}", source="", start=0, end=200) for i in range(n)]


def test_the_bridge_s_facts_keep_their_room_before_the_question_when_passages_would_fill_it():
    words = lambda text: len(text.split())  # noqa: E731
    fact = Fact("G. Stanley Hall", "president_of", "American Psychological Association",
                [Citation("d9", 99, 0, 10)], kind="copula")
    question = "Who was the first president of the association which published Journal of Psychotherapy Integration?"
    ctx = Packer(words, 376, 64, fact_share=0.0).pack(question, _hits(20), [fact], fact_floor=24)
    user = ctx.user
    assert user.index("[1] Title 0") < user.index("- G. Stanley Hall | president of") < user.index("Question:")
    assert user.endswith(f"Question: {question}") and ctx.prompt_tokens <= 376 - 64 and ctx.facts == [fact]
    assert ctx.source(len(ctx.sources)).chunk_id == 99  # the fact's passage is a source of its own
    # the floor's room is taken from the passages, which otherwise fill the window
    plain = Packer(words, 376, 64, fact_share=0.0).pack(question, _hits(20), [fact])
    assert len(ctx.report.included) < len(plain.report.included) and plain.facts == []
