"""Scorers and metrics: `heuristic` (default, no weights, own 0–10 scale), `laion` (open_clip + LAION
head), `qalign`, `liqe` (local weights only), and the full-reference metric registry
(`aether_data.scoring.registry.METRICS`)."""

from aether_data.scoring.heuristic import heuristic_components, heuristic_score
from aether_data.scoring.laion import (
    HeuristicScorer,
    LaionScorer,
    Scorer,
    load_aesthetic_head,
)
from aether_data.scoring.registry import METRICS, MetricSpec, make_scorer
from aether_data.scoring.weights import MissingWeights

__all__ = [
    "METRICS",
    "HeuristicScorer",
    "LaionScorer",
    "MetricSpec",
    "MissingWeights",
    "Scorer",
    "heuristic_components",
    "heuristic_score",
    "load_aesthetic_head",
    "make_scorer",
]
