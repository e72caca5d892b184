"""Aesthetic scorers: `heuristic` (default, no weights); learned scorers plug in beside it."""

from aether_data.scoring.heuristic import heuristic_components, heuristic_score

__all__ = ["heuristic_components", "heuristic_score"]
