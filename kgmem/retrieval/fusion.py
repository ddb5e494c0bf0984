"""Combine rankings from several retrievers into one."""
from __future__ import annotations

from collections.abc import Mapping, Sequence


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[tuple[int, float]]],
    weights: Mapping[str, float] | None = None,
    k: int = 60,
    k_of: Mapping[str, int] | None = None,
) -> list[tuple[int, float]]:
    """RRF (Cormack et al. 2009): score = Σ w / (k + rank). Ties keep first-seen order.

    `k_of` gives a ranking its own constant: a smaller k makes its first ranks count
    more against its tail (for a ranking whose top is precise and whose tail is noise)."""
    scores: dict[int, float] = {}
    for name, ranking in rankings.items():
        w = 1.0 if weights is None else weights.get(name, 0.0)
        if w == 0.0:
            continue
        kk = (k_of or {}).get(name, k)
        for rank, (item, _score) in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + w / (kk + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def ranks_of(rankings: Mapping[str, Sequence[tuple[int, float]]]) -> dict[int, dict[str, int]]:
    """For each item, its 1-based rank in each ranking that holds it (for explanations)."""
    out: dict[int, dict[str, int]] = {}
    for name, ranking in rankings.items():
        for rank, (item, _score) in enumerate(ranking, 1):
            out.setdefault(item, {})[name] = rank
    return out
