"""Aesthetic scorers: `heuristic` (default, no weights) and `laion` (open_clip + LAION head, local files)."""

from aether_data.scoring.heuristic import heuristic_components, heuristic_score
from aether_data.scoring.laion import (
    HeuristicScorer,
    LaionScorer,
    Scorer,
    load_aesthetic_head,
    make_scorer,
)

__all__ = [
    "HeuristicScorer",
    "LaionScorer",
    "Scorer",
    "heuristic_components",
    "heuristic_score",
    "load_aesthetic_head",
    "make_scorer",
]
