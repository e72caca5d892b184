"""Benchmarks like the paper's (FiveK-Bench, Aether-Bench Auto / Style / Param) and scoring of any
method's outputs on them with the paper's protocols (`aether benchmark build`, `aether eval --bench`).
"""

from aether_data.evaluation.bench import (
    BENCH_FILE,
    build_aether_bench,
    build_fivek_bench,
    check_disjoint,
    load_bench,
)
from aether_data.evaluation.score import evaluate_bench, markdown_tables

__all__ = [
    "BENCH_FILE",
    "build_aether_bench",
    "build_fivek_bench",
    "check_disjoint",
    "evaluate_bench",
    "load_bench",
    "markdown_tables",
]
