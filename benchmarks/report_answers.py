"""The answers page's sections on the hops' bridge facts, yes/no re-asks and declines, and
on llama.cpp runtimes."""

from __future__ import annotations

from report_common import Results, num, signed, table

HOP_SETS = {"musique": "MuSiQue", "hotpotqa": "HotpotQA"}


def _declines(s: dict) -> str:
    return f"{s['declined']} ({s['declined_gold_in_prompt']})"


def hop_facts(r: Results) -> str:
    """Same run per set: the prompt before, with the yes/no re-ask, with the bridge's facts, naive RAG."""
    rows = []
    for key, name in HOP_SETS.items():
        f = f"hop_facts_{key}.json"
        plain, before, after, naive = (r(f, k) for k in ("before_no_reask", "before", "bridge_facts", "naive"))
        rows.append([
            f"{name} (first {r(f, 'questions')})",
            num(plain["F1"]), num(before["F1"]), f"**{num(after['F1'])}**", num(naive["F1"]),
            signed(after["F1"] - naive["F1"]),
            f"{_declines(plain)} → {_declines(after)}", after["yes_no_reasked"],
        ])
    hopped = []
    for key, name in HOP_SETS.items():
        w = r(f"hop_facts_{key}.json", "with_hops")
        pairs = list(zip(*(r(f"hop_facts_{key}.json", "per_question", arm) for arm in ("before", "bridge_facts"))))
        won, lost = sum(b["f1"] > a["f1"] for a, b in pairs), sum(b["f1"] < a["f1"] for a, b in pairs)
        hopped.append(f"{name} {num(w['before']['F1'])} → {num(w['bridge_facts']['F1'])} "
                      f"({w['bridge_facts']['n']} questions; answers better–worse {won}–{lost})")
    t = "findings_trials.json"
    trial_rows = [[v["prompt"], num(v["F1"]), f"{v['won_vs_before']}–{v['lost_vs_before']}"]
                  for v in r(t, "variants").values()]
    return (
        "## The hops' findings in the prompt, yes/no and declines\n\n"
        "Same run per set, one process, one loaded model: kgmem's answer with last round's prompt (without and "
        "with the yes/no re-ask), then with the graph's facts about the hops' last bridge (room kept for them), "
        "then naive RAG. A declined yes/no question whose names are all in the packed passages is asked once more "
        "with \"yes\" and \"no\" the only answers. Declined: how many, and in brackets how many of those had every "
        "supporting passage in the prompt.\n\n"
        + table(["set (questions)", "before, no re-ask", "+ yes/no re-ask", "**+ bridge facts (kgmem now)**",
                 "naive RAG", "kgmem − naive", "declined (gold in prompt)", "yes/no re-asked"], rows)
        + "\n\nF1 of the questions the hops rewrote, without → with the bridge's facts: " + "; ".join(hopped)
        + ". The facts are kept for the multi-hop set they help; on HotpotQA's two-hop questions they are "
        "about even (within a question or two).\n\nHow to tell the model what the hops found was chosen on "
        "MuSiQue's first 60 questions "
        f"({r(t, 'questions_with_hops')} rewritten by the hops), each variant answered in a row over the same "
        "passages, same run. Saying the bridges and the rewritten question in words misled the 1.5B model where "
        "a bridge was wrong; the bridge's facts alone, as graph facts, did not:\n\n"
        + table(["what the prompt adds", "F1 (hop questions)", "won–lost against before"], trial_rows)
    )


def runtimes(r: Results) -> str:
    f = "llama_runtimes.json"
    rows = [[f"`{name}` {v['version']}", num(v["prompt_tok_s"]), num(v["gen_tok_s"]), num(v["first_token_p50_s"]),
             num(v["load_s"], 2)] for name, v in r(f, "runtimes").items()]
    x, ik = (r(f, "runtimes", k) for k in ("xllamacpp", "ik-llama-cpp-python"))
    missing = ", ".join(r(f, "ik_wheel", "missing"))
    return (
        "## llama.cpp runtimes\n\n"
        f"The same GGUF and the same 8 packed MuSiQue prompts, no prompt cache, 2 threads, on "
        f"{r(f, 'machine')}:\n\n"
        + table(["runtime", "prompt tokens/s", "generation tokens/s", "first token (s, p50)", "load (s)"], rows)
        + f"\n\nThe ik wheel reads prompts {num(ik['prompt_tok_s'] / x['prompt_tok_s'], 2)}× as fast here and "
        f"generates {num(ik['gen_tok_s'] / x['gen_tok_s'], 2)}× as fast. It is not kgmem's runtime: it lacks "
        f"{missing}; and it holds no AVX-512 code ({r(f, 'ik_wheel', 'how')}), so on a CPU with AVX-512 it runs "
        "the same AVX2 kernels. A faster runtime for AVX-512 and AMX CPUs is still to be measured on one."
    )
