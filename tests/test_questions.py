"""Reading what a question asks for from its words, and the comparison step of chat backends."""
from __future__ import annotations

import json

from kgmem.pipelines.llm import ANSWER_SCHEMA, ChatBackend, ChatResult
from kgmem.pipelines.llm.base import COMPARE_SCHEMA, YES_NO_SCHEMA
from kgmem.pipelines.llm.questions import compared_by, is_yes_no, named_in_passages, same_value
from kgmem.retrieval.packer import ContextReport, PackedContext, Source


def test_compared_by_reads_the_property_of_same_questions():
    assert compared_by("Are Nantong and Jingdezhen situated in the same province ?") == "province"
    assert compared_by("Are Marian Gold and Jung Eun-ji members of the same band?") == "band"
    assert compared_by("Were Scott Derrickson and Ed Wood of the same nationality?") == "nationality"
    assert compared_by("Did Lyon and Bordeaux play in the same football league in 1990?") == "football league"
    assert compared_by("Is Mount Olympus in the same range as Mount Ossa?") == "range"
    # not yes/no, or no comparison: the ordinary answer step
    assert compared_by("Which band did Marian Gold and Jung Eun-ji share the same label with?") is None
    assert compared_by("Are Christopher Nolan and Sathish Kalathil both film directors?") is None
    assert is_yes_no("Are Medici and Senet both board games?") and not is_yes_no("Who founded Senet?")


def test_same_value_compares_words_not_strings():
    assert same_value("Jiangsu", "Jiangsu Province") is True
    assert same_value("the United States", "United States of America") is True
    assert same_value("Jiangsu", "Jiangxi") is False
    assert same_value("Alphaville", "Apink") is False
    assert same_value("", "Jiangxi") is None


class Scripted(ChatBackend):
    """A chat backend that replies from a script (pure logic: what the step does with replies)."""

    name = "scripted"

    def __init__(self, replies: dict[str, str]):
        self.replies, self.schemas = replies, []

    def chat(self, messages, max_tokens, schema=None, on_delta=None, no_repeat=False):
        self.schemas.append(schema)
        text = self.replies["compare" if schema is COMPARE_SCHEMA else "answer"]
        if on_delta:
            on_delta(text)
        return ChatResult(text, prompt_tokens=10)

    def count_tokens(self, text):
        return len(text.split())


def _context() -> PackedContext:
    texts = {"Nantong": "Nantong is a city in Jiangsu.", "Jingdezhen": "Jingdezhen is a city in Jiangxi."}
    sources = [Source(n, f"d{n}", n, title, "", 0, len(text), text, True)
               for n, (title, text) in enumerate(texts.items(), 1)]
    return PackedContext("system", "passages and question", sources, [], ContextReport(1024, {}, [1, 2], []))


def test_the_verdict_of_a_comparison_is_computed_from_the_two_values():
    q = "Are Nantong and Jingdezhen situated in the same province?"
    values = {"first": "Nantong", "first_value": "Jiangsu", "second": "Jingdezhen", "second_value": "Jiangxi",
              "sources": [1, 2]}
    model = Scripted({"compare": json.dumps(values), "answer": '{"answer": "yes", "sources": [1]}'})
    streamed: list[str] = []
    reply = model.answer(q, _context(), 64, streamed.append)
    assert (reply.answer, reply.sources, reply.found) == ("no", [1, 2], True)
    assert streamed == ["no"] and model.schemas == [COMPARE_SCHEMA]
    same = Scripted({"compare": json.dumps({**values, "second_value": "Jiangsu province"}), "answer": ""})
    assert same.answer(q, _context(), 64).answer == "yes"


def test_a_comparison_without_both_values_falls_back_to_the_ordinary_answer():
    q = "Are Nantong and Jingdezhen situated in the same province?"
    missing = {"first": "Nantong", "first_value": "Jiangsu", "second": "Jingdezhen", "second_value": "not in memory",
               "sources": [1]}
    model = Scripted({"compare": json.dumps(missing), "answer": '{"answer": "no", "sources": [2]}'})
    reply = model.answer(q, _context(), 64)
    assert (reply.answer, reply.sources) == ("no", [2]) and model.schemas == [COMPARE_SCHEMA, ANSWER_SCHEMA]
    broken = Scripted({"compare": "Jiangsu and Jiangxi", "answer": '{"answer": "not in memory", "sources": []}'})
    assert not broken.answer(q, _context(), 64).found


def test_explains_tells_questions_answered_by_an_explanation_from_those_answered_by_a_phrase():
    from kgmem.pipelines.llm.questions import explains

    for q in ("How do I mark function parameters as positional-only?", "What does the nonlocal statement do?",
              "Why is 0.1 + 0.2 not exactly 0.3?", "What is a generator?", "What are keyword-only arguments?",
              "What is the difference between a list and a tuple?", "how can I compress data with zlib?",
              "What is functools.cmp_to_key for?"):
        assert explains(q), q
    for q in ("Who was the first president of the American Psychological Association?",
              "Which function configures logging from a dictionary?", "What is the capital of Portugal?",
              "How many students enrolled in 2004?", "What is Caroline's identity?", "Is Python's sort stable?",
              "How to Eat, released in which year, is a book by Nigella Lawson", "When was the abbey founded?"):
        assert not explains(q), q


def test_a_question_asking_for_an_explanation_gets_the_explanation_instructions_and_room():
    from kgmem.pipelines.llm.base import ANSWER_INSTRUCTIONS, EXPLAIN_INSTRUCTIONS, EXPLAIN_SCHEMA

    class Recording(Scripted):
        def chat(self, messages, max_tokens, schema=None, on_delta=None, no_repeat=False):
            self.seen = (messages[0]["content"], max_tokens, schema)
            return super().chat(messages, max_tokens, schema, on_delta)

    said = "Put a / after them: def f(a, b, /, c). Everything before the / is positional-only."
    model = Recording({"answer": json.dumps({"answer": said, "sources": [1]})})
    context = _context()
    context.system, context.form = ANSWER_INSTRUCTIONS, "explain"
    reply = model.answer("How do I mark parameters as positional-only?", context, 192)
    assert reply.answer == said.rstrip(".") and model.seen == (EXPLAIN_INSTRUCTIONS, 192, EXPLAIN_SCHEMA)
    context.form = "phrase"
    model.answer("Which city is in Jiangsu?", context, 64)
    assert model.seen == (ANSWER_INSTRUCTIONS, 64, ANSWER_SCHEMA)


def test_an_explanation_cut_by_its_length_limit_ends_at_its_last_full_sentence():
    from kgmem.pipelines.llm.base import ANSWER_INSTRUCTIONS

    said = ("Use the functools.lru_cache decorator. It keeps the results of recent calls and returns them when "
            "the same arguments come again. The cache_info() function can be used to measu")
    model = Scripted({"answer": '{"answer": "' + said})  # the model's token limit came first
    context = _context()
    context.system, context.form = ANSWER_INSTRUCTIONS, "explain"
    reply = model.answer("How do I cache the results of an expensive function?", context, 192)
    assert reply.answer == said[: said.rindex(". ") + 1]
    whole = Scripted({"answer": json.dumps({"answer": said[: said.rindex(". ") + 1], "sources": [1]})})
    assert whole.answer("How do I cache the results?", context, 192).answer == said[: said.rindex(". ")]


def test_a_yes_no_question_s_names_are_in_the_passages_only_when_each_is_there_whole():
    q = "Are Christopher Nolan and Sathish Kalathil both film directors?"
    both = ["Christopher Nolan is a British-American film director.", "Sathish Kalathil is an Indian film director."]
    assert named_in_passages(q, both)
    assert not named_in_passages(q, both[:1])  # one of the two is missing: a decline may stand
    assert named_in_passages("Is the Bank of America older than Wells Fargo?",
                             ["Bank of America was founded in 1904.", "Wells Fargo dates from 1852."])
    assert not named_in_passages("Is the sky on Mars blue?", ["The sky of Venus is yellow."])
    assert named_in_passages("is the sky on mars blue?", ["at sunset the sky on mars turns blue"])


def test_a_declined_yes_no_question_is_asked_for_yes_or_no_when_the_passages_name_what_it_asks_about():
    q = "Are Nantong and Jingdezhen both cities?"
    model = Scripted({"answer": '{"answer": "yes", "sources": [1, 2]}'})
    reply = model.yes_or_no(q, _context(), 64)
    assert (reply.answer, reply.sources) == ("yes", [1, 2]) and model.schemas[-1] is YES_NO_SCHEMA
    assert model.yes_or_no("Are Nantong and Suzhou both cities?", _context(), 64) is None  # Suzhou is not there
    assert model.yes_or_no("Which city is in Jiangsu?", _context(), 64) is None  # not a yes/no question
    assert Scripted({"answer": '{"answer": "maybe", "sources": []}'}).yes_or_no(q, _context(), 64) is None
