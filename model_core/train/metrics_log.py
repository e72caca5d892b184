"""The trainer's ``metrics.csv``: one row per logged step, appended across resumes."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aether_data.io.atomic import atomic_write_text

METRICS = "metrics.csv"
SFT_COLUMNS = ("step", "loss", "ce", "l1", "lr", "grad_norm", "tokens", "elapsed_s")
DAPO_COLUMNS = (
    "step", "task", "loss", "loss_first", "loss_last", "reward", "r_format", "r_similarity",
    "r_aesthetic", "kept_groups", "dropped_groups", "rounds", "clip_frac", "resp_tokens", "lr",
    "grad_norm", "elapsed_s",
)  # fmt: skip


class CsvLog:
    """Append-only metrics CSV (header written once; a resumed run appends)."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = path
        exists = path.exists() and path.stat().st_size > 0
        if exists:
            with path.open(newline="", encoding="utf-8") as fh:
                self.columns = next(csv.reader(fh), list(columns))
        else:
            self.columns = list(columns)
            header = io.StringIO(newline="")
            csv.writer(header).writerow(self.columns)
            atomic_write_text(path, header.getvalue())  # then rows are appended (a resumed run too)

    def write(self, row: Mapping[str, Any]) -> None:
        with self.path.open("a", newline="", encoding="utf-8") as fh:
            csv.DictWriter(fh, self.columns, extrasaction="ignore").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
            )


def read_metrics(out_dir: str | Path) -> list[dict[str, str]]:
    """Rows of ``metrics.csv``."""
    with (Path(out_dir) / METRICS).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
