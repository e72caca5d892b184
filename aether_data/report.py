"""The auditor's view: a self-contained HTML report and a dataset card (README.md) for a build.

Everything is computed from what was written (indexes, the JSON members read by offset, the
manifest), never from the plan, so the report describes the dataset as it is on disk.
"""

from __future__ import annotations

import base64
import html
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from aether_data import __version__
from aether_data.card import write_card
from aether_data.figures import figure_png
from aether_data.io import storage
from aether_data.io.atomic import atomic_write_bytes, atomic_write_text
from aether_data.params import GROUP_PARAMS, GROUPS, PARAM_NAMES
from aether_data.report_quality import plot_delta_e, quality_tables, reference_delta_e

SECTIONS = (
    "Overview",
    "Counts",
    "Parameter histograms",
    "Aesthetic scores",
    "Quality",
    "Annotation",
    "Skipped inputs",
    "Contact sheet",
    "Source licences",
)


@dataclass
class DatasetStats:
    """Everything the report shows, gathered in one streaming pass over the indexes and records."""

    manifest: dict[str, Any]
    per_workflow: Counter[str] = field(default_factory=Counter)
    per_protocol: Counter[str] = field(default_factory=Counter)
    per_primary: Counter[str] = field(default_factory=Counter)
    per_fine: Counter[str] = field(default_factory=Counter)
    params: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    score_input: list[float] = field(default_factory=list)
    score_target: list[float] = field(default_factory=list)
    annotators: Counter[str] = field(default_factory=Counter)
    fallbacks: Counter[str] = field(default_factory=Counter)
    attempts: Counter[int] = field(default_factory=Counter)
    licences: Counter[str] = field(default_factory=Counter)
    sources: set[str] = field(default_factory=set)
    examples: list[tuple[str, dict[str, Any], bytes, bytes]] = field(default_factory=list)
    quality: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    scores_by_workflow: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )


def _read_member(f: Any, offset: int, size: int) -> bytes:
    f.seek(offset)
    return f.read(size)


def _attach_masks(f: Any, row: dict[str, Any], rec: dict[str, Any], ext: str) -> None:
    """Put a region sample's label map (the member after its JSON) on the record for the contact
    sheet, which draws it as a third column; a sample whose map cannot be read is shown without."""
    from aether_data.dataset.tar import read_following_member
    from aether_data.inspect import MASKS_FIELD

    masks = read_following_member(f, row["json_offset"], row["json_size"], f"{row['key']}.{ext}")
    if masks is not None:
        rec[MASKS_FIELD] = masks


def collect_stats(out_dir: str | Path | storage.RemotePath, examples_per_workflow: int = 3) -> DatasetStats:
    """One pass: index columns for counts and scores, JSON members (by offset) for the rest.
    ``out_dir`` may be a URI (each shard is read from a local copy)."""
    out_dir = storage.as_path(out_dir)
    manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
    stats = DatasetStats(manifest=manifest)
    shown: Counter[str] = Counter()
    for entry in manifest["shards"]:
        with storage.local_file(out_dir / entry["index"]) as index:
            rows = pq.read_table(index).to_pylist()
        with storage.local_file(out_dir / entry["path"]) as tar, open(tar, "rb") as f:
            for row in rows:
                wf = row["workflow"] or "unknown"
                stats.per_workflow[wf] += 1
                stats.per_protocol[row["protocol"] or "none"] += 1
                stats.annotators[row["annotator"] or "unknown"] += 1
                stats.attempts[int(row["attempts"] or 0)] += 1
                if row["fallback_reason"]:
                    stats.fallbacks[row["fallback_reason"]] += 1
                if row["score_input"] is not None and row["score_target"] is not None:
                    stats.score_input.append(float(row["score_input"]))
                    stats.score_target.append(float(row["score_target"]))
                    stats.scores_by_workflow[wf].append(
                        (float(row["score_input"]), float(row["score_target"]))
                    )
                rec = json.loads(_read_member(f, row["json_offset"], row["json_size"]))
                if rec.get("quality"):
                    stats.quality[wf].append(rec["quality"])
                for name, v in (rec.get("params") or {}).items():
                    if abs(v) >= 1e-4:
                        stats.params[name].append(float(v))
                preset = rec.get("preset") or {}
                if preset:
                    stats.per_primary[preset.get("primary", "?")] += 1
                    stats.per_fine[preset.get("fine", "?")] += 1
                src = rec.get("source") or {}
                stats.licences[src.get("license") or "not recorded"] += 1
                stats.sources.add(src.get("sha256", ""))
                if shown[wf] < examples_per_workflow:
                    shown[wf] += 1
                    inp = _read_member(f, row["input_offset"], row["input_size"])
                    tgt = _read_member(f, row["target_offset"], row["target_size"])
                    if (regions := rec.get("regions")) and regions.get("masks"):
                        _attach_masks(f, row, rec, regions["masks"])
                    stats.examples.append((row["key"], rec, inp, tgt))
    return stats


# --------------------------------------------------------------------------------------------------
# plots


def plot_param_histograms(stats: DatasetStats) -> bytes:
    """Small multiples: one histogram of normalised values per parameter that was ever active."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in PARAM_NAMES if stats.params.get(n)] or ["(none)"]
    cols = 6
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.6, rows * 1.9), squeeze=False)
    colours = {g: c for g, c in zip(GROUPS, ("#d98e04", "#2b7bb9", "#b0358f"))}
    for ax, name in zip(axes.flat, names):
        values = stats.params.get(name, [])
        group = next((g for g in GROUPS if name in GROUP_PARAMS[g]), GROUPS[0])
        ax.hist(values, bins=21, range=(-1, 1), color=colours[group])
        ax.set_title(f"{name}\nn={len(values)}", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle("Active parameter values (normalised, colour = group)", fontsize=9)
    fig.tight_layout()
    return figure_png(fig)


def plot_scores(stats: DatasetStats) -> bytes:
    """Aesthetic score of inputs vs targets (the heuristic scorer, 0–10)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    bins = np.linspace(0, 10, 41)
    ax.hist(stats.score_input, bins=bins, alpha=0.6, label="input", color="#888888")
    ax.hist(stats.score_target, bins=bins, alpha=0.6, label="target", color="#2b7bb9")
    ax.set_xlabel("aesthetic score")
    ax.set_ylabel("samples")
    ax.legend()
    return figure_png(fig)


def plot_counts(counter: Counter[str], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:40] or [("(none)", 0)]
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(items) + 0.8))
    ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="#2b7bb9")
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    return figure_png(fig)


# --------------------------------------------------------------------------------------------------
# output


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...]) -> tuple[str, str]:
    """(HTML, Markdown) renderings of the same table."""
    h = "<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in header) + "</tr>"
    for r in rows:
        h += "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
    h += "</table>"
    md = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
    md += "".join("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |\n" for r in rows)
    return h, md


def _counter_rows(c: Counter[Any]) -> list[tuple[Any, int]]:
    return sorted(c.items(), key=lambda kv: (-kv[1], str(kv[0])))


def _images(stats: DatasetStats, rep: Path) -> dict[str, bytes]:
    """The report's PNG figures, written under ``rep`` (name → bytes, for inlining)."""
    from aether_data.inspect import contact_sheet

    images = {
        "params.png": plot_param_histograms(stats),
        "scores.png": plot_scores(stats),
        "protocols.png": plot_counts(stats.per_protocol, "samples per protocol"),
    }
    if stats.per_fine:
        images["categories.png"] = plot_counts(stats.per_fine, "samples per fine preset category")
    if stats.quality:
        images["delta_e.png"] = plot_delta_e(stats.quality, reference_delta_e(stats.manifest))
    sheet = contact_sheet(stats.examples, rep / "contact_sheet.png", cell=192)
    images["contact_sheet.png"] = sheet.read_bytes()
    for name, data in images.items():
        if name != "contact_sheet.png":  # already written by contact_sheet()
            atomic_write_bytes(rep / name, data)

    return images


def _tables(stats: DatasetStats) -> dict[str, list[tuple[str, str]]]:
    """Per section, its tables as (HTML, markdown) pairs."""
    m = stats.manifest
    mean_in = float(np.mean(stats.score_input)) if stats.score_input else float("nan")
    mean_tg = float(np.mean(stats.score_target)) if stats.score_target else float("nan")
    overview = [
        ("samples", m["samples"]),
        ("shards", len(m["shards"])),
        ("distinct source photos", len(stats.sources)),
        ("seed", m["seed"]),
        ("code version", m["code_version"]),
        ("skipped inputs", m["skipped"]["count"]),
        ("mean aesthetic score input → target", f"{mean_in:.2f} → {mean_tg:.2f}"),
    ]
    tables: dict[str, list[tuple[str, str]]] = {s: [] for s in SECTIONS}
    tables["Overview"].append(_table(overview, ("field", "value")))
    tables["Counts"].append(_table(_counter_rows(stats.per_workflow), ("workflow", "samples")))
    tables["Counts"].append(_table(_counter_rows(stats.per_protocol), ("protocol", "samples")))
    if stats.per_primary:
        tables["Counts"].append(
            _table(_counter_rows(stats.per_primary), ("preset primary category", "samples"))
        )
        tables["Counts"].append(_table(_counter_rows(stats.per_fine), ("preset fine category", "samples")))
    param_rows = [
        (n, len(stats.params[n]), f"{np.mean(stats.params[n]):+.3f}", f"{np.std(stats.params[n]):.3f}")
        for n in PARAM_NAMES
        if stats.params.get(n)
    ]
    tables["Parameter histograms"].append(_table(param_rows, ("parameter", "active in", "mean", "std")))
    tables["Aesthetic scores"].append(
        _table(
            [
                ("input", len(stats.score_input), f"{mean_in:.3f}"),
                ("target", len(stats.score_target), f"{mean_tg:.3f}"),
            ],
            ("image", "n", "mean heuristic score"),
        )
    )
    tables["Quality"] += quality_tables(m, stats.quality, stats.scores_by_workflow, _table)
    tables["Annotation"].append(_table(_counter_rows(stats.annotators), ("annotator", "samples")))
    tables["Annotation"].append(_table(_counter_rows(stats.attempts), ("attempts", "samples")))
    tables["Annotation"].append(
        _table(_counter_rows(stats.fallbacks) or [("(none)", 0)], ("fallback reason", "samples"))
    )
    tables["Skipped inputs"].append(
        _table(_counter_rows(Counter(m["skipped"]["reasons"])) or [("(none)", 0)], ("reason", "inputs"))
    )
    tables["Source licences"].append(_table(_counter_rows(stats.licences), ("licence", "samples")))
    return tables


def _pages(out: Path, tables: dict[str, list[tuple[str, str]]], images: dict[str, bytes]) -> tuple[str, str]:
    """(report.html, the card's statistics sections) text, in order with their tables and figures."""

    def img_html(name: str) -> str:
        b64 = base64.b64encode(images[name]).decode()
        return f'<img alt="{name}" src="data:image/png;base64,{b64}">'

    figures = {
        "Counts": ["protocols.png"] + (["categories.png"] if "categories.png" in images else []),
        "Parameter histograms": ["params.png"],
        "Aesthetic scores": ["scores.png"],
        "Quality": ["delta_e.png"] if "delta_e.png" in images else [],
        "Contact sheet": ["contact_sheet.png"],
    }
    title = f"aether dataset report — {out.name}"
    body = [f"<h1>{html.escape(title)}</h1>"]
    card = [
        "## Statistics\n",
        f"From `aether report` (aether {__version__}); the full report with figures is `report/report.html`.\n",
    ]
    for section in SECTIONS:
        body.append(f'<h2 id="{section.lower().replace(" ", "-")}">{section}</h2>')
        card.append(f"### {section}\n")
        for h, md in tables[section]:
            body.append(h)
            card.append(md)
        for name in figures.get(section, []):
            body.append(img_html(name))
            card.append(f"![{section}](report/{name})\n")
        if section == "Source licences":
            note = "Licences as recorded per source; sources without a record must be checked by the user."
            body.append(f"<p>{note}</p>")
            card.append(note + "\n")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:0.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "font-size:13px;text-align:left}img{max-width:100%;display:block;margin:0.6em 0}"
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )
    return page, "\n".join(card)


def write_report(
    out_dir: str | Path | storage.RemotePath, examples_per_workflow: int = 3
) -> dict[str, storage.AnyPath]:
    """Write `report/report.html` (self-contained), `report/*.png` and the dataset card `README.md`
    (``out_dir`` may be a URI such as ``s3://bucket/run``)."""
    out = storage.as_path(out_dir)
    stats = collect_stats(out, examples_per_workflow)
    rep = out / "report"
    if isinstance(rep, Path):
        rep.mkdir(exist_ok=True)
    images = _images(stats, rep)
    page, stats_md = _pages(out, _tables(stats), images)
    html_path = atomic_write_text(rep / "report.html", page)
    card_path = write_card(out, stats_markdown=stats_md, licences=stats.licences)
    return {"html": html_path, "card": card_path, **{n: rep / n for n in images}}
