"""Combine rankings from several retrievers into one."""
from __future__ import annotations

from collections.abc import Mapping, Sequence


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[tuple[int, float]]],
    weights: Mapping[str, float] | None = None,
    k: int = 60,
) -> list[tuple[int, float]]:
    """RRF (Cormack et al. 2009): score = Σ w / (k + rank). Ties keep first-seen order."""
    scores: dict[int, float] = {}
    for name, ranking in rankings.items():
        w = 1.0 if weights is None else weights.get(name, 0.0)
        if w == 0.0:
            continue
        for rank, (item, _score) in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def ranks_of(rankings: Mapping[str, Sequence[tuple[int, float]]]) -> dict[int, dict[str, int]]:
    """For each item, its 1-based rank in each ranking that holds it (for explanations)."""
    out: dict[int, dict[str, int]] = {}
    for name, ranking in rankings.items():
        for rank, (item, _score) in enumerate(ranking, 1):
            out.setdefault(item, {})[name] = rank
    return out
