"""Score a folder of predictions (or a model) on a benchmark with the paper's protocols.

- Full-reference metrics (L1, PSNR, SSIM, LPIPS, DISTS, GMSD, TD): per input, the best value over
  the expert retouches (max where higher is better, min otherwise), then the mean over inputs
  (MonetGPT's FiveK protocol; with one reference it is the plain mean).
- Histogram intersections: per input, the prediction's histogram against the aggregate distribution
  of all experts' pixels (pooled histogram), then the mean.
- No-reference metrics (LAION, Q-Align, LIQE): the prediction alone; mean and standard deviation.
- Per expert: every full-reference metric and histogram against that expert alone.

Predictions are looked up as ``PRED/TASK/ID.*`` then ``PRED/ID.*`` (ID = the benchmark's file stem);
one of a different size from the reference is area/cubic-resized to it (counted in ``resized``).
A metric whose weights are missing is skipped with its one-line reason unless it was asked for by
name, in which case the error is raised.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from aether_data.evaluation.bench import IMAGE_EXTS, BenchError, load_bench
from aether_data.io.atomic import atomic_write_bytes
from aether_data.scoring import fullref as F
from aether_data.scoring.registry import METRICS, TABLE_COLUMNS, make_scorer
from aether_data.scoring.weights import MissingWeights

TASK_TITLES = {
    "fivek": "FiveK-Bench",
    "auto": "Aether-Bench (Auto)",
    "style": "Aether-Bench (Style)",
    "param": "Aether-Bench (Param)",
}


def _read(path: Path) -> np.ndarray:
    from aether_data.io.imaging import load_image

    return load_image(path)


def find_prediction(pred_dir: Path, task: str, item_id: str) -> Path | None:
    for d in (pred_dir / task, pred_dir):
        for ext in IMAGE_EXTS:
            for e in (ext, ext.upper()):
                p = d / f"{item_id}{e}"
                if p.is_file():
                    return p
    return None


def _fit(pred: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, bool]:
    if pred.shape[:2] == shape[:2]:
        return pred, False
    h, w = shape[:2]
    interp = cv2.INTER_AREA if pred.shape[0] * pred.shape[1] > h * w else cv2.INTER_CUBIC
    return np.clip(cv2.resize(pred, (w, h), interpolation=interp), 0.0, 1.0), True


def _wanted(bench: Mapping[str, Any], metrics: Sequence[str] | None) -> tuple[list[str], bool]:
    if metrics:
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise BenchError(f"unknown metric(s) {unknown}; known: {', '.join(METRICS)}")
        return list(dict.fromkeys(metrics)), True
    cols: list[str] = []
    for task in bench["tasks"]:
        cols += TABLE_COLUMNS.get(task, TABLE_COLUMNS["fivek"])
    if bench["kind"] == "fivek" or "style" in bench["tasks"] or "param" in bench["tasks"]:
        cols += ["l1"]
    cols += ["hist_l", "hist_c", "hist_s", "hist_m"] if bench["kind"] == "fivek" else []
    return list(dict.fromkeys(cols)), False


def _prepare(
    names: list[str],
    explicit: bool,
    weights_dir: str | None,
    scorer_options: Mapping[str, Mapping[str, Any]],
    device: str,
) -> tuple[list[str], dict[str, Any], dict[str, str]]:
    """Metrics that can run here, built scorers, and {metric: reason} for the skipped ones."""
    ready, scorers, skipped = [], {}, {}
    for name in names:
        spec = METRICS[name]
        try:
            if spec.kind == "noref":
                opts = dict(scorer_options.get(name) or {})
                if not opts.get("model") and not explicit:
                    skipped[name] = f"no local weights given (--{name}-model)"
                    continue
                scorers[name] = make_scorer(
                    name, opts.pop("model", None), opts.pop("head", None), device, **opts
                )
            elif spec.needs_weights:
                F._deep_metric(name, weights_dir)
        except (MissingWeights, ValueError) as exc:
            if explicit:
                raise
            skipped[name] = str(exc)
            continue
        ready.append(name)
    return ready, scorers, skipped


def _mean(rows: list[Mapping[str, float]]) -> dict[str, float]:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}


def _std(rows: list[Mapping[str, float]], names: Sequence[str]) -> dict[str, float]:
    return {k: float(np.std([r[k] for r in rows if k in r])) for k in names if any(k in r for r in rows)}


def evaluate_bench(
    bench_path: str | Path,
    predictions: str | Path,
    *,
    metrics: Sequence[str] | None = None,
    weights_dir: str | None = None,
    scorer_options: Mapping[str, Mapping[str, Any]] | None = None,
    device: str = "cpu",
    method: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """{"metrics": {name: mean}, "std": {...}, "per_expert": {expert: {name: mean}}, "n": N,
    "tasks": {task: {"n", "metrics", "std", "per_expert"}}, "skipped": {name: reason}, ...}.

    Kept whole: one pass over the benchmark's items, in the paper's protocol order (load, best of
    the experts, pooled histograms, aggregate); the metric set-up and loading are helpers already.
    """
    bench = load_bench(bench_path)
    root, pred_dir = Path(bench["root"]), Path(predictions)
    names, explicit = _wanted(bench, metrics)
    ready, scorers, skipped = _prepare(names, explicit, weights_dir, scorer_options or {}, device)
    full = [m for m in ready if METRICS[m].kind == "full"]
    hists = [m for m in ready if METRICS[m].kind == "hist"]
    norefs = [m for m in ready if METRICS[m].kind == "noref"]

    missing = [
        f"{t}/{it['id']}"
        for t, task in bench["tasks"].items()
        for it in task["items"]
        if find_prediction(pred_dir, t, it["id"]) is None
    ]
    if missing:
        raise BenchError(
            f"{pred_dir}: {len(missing)} prediction(s) missing, e.g. {missing[:3]} "
            "(expected PRED/TASK/ID.png or PRED/ID.png)"
        )

    all_rows: list[dict[str, float]] = []
    all_expert_rows: dict[str, list[dict[str, float]]] = {}
    tasks_out: dict[str, Any] = {}
    resized = 0
    for t, task in bench["tasks"].items():
        rows: list[dict[str, float]] = []
        expert_rows: dict[str, list[dict[str, float]]] = {e: [] for e in task["experts"]}
        preds = []
        item_rows: list[dict[str, Any]] = []
        for i, it in enumerate(task["items"]):
            refs = {e: _read(root / p) for e, p in it["targets"].items()}
            first = next(iter(refs.values()))
            pred, was = _fit(_read(find_prediction(pred_dir, t, it["id"])), first.shape)  # type: ignore[arg-type]
            resized += was
            row: dict[str, float] = {}
            best: dict[str, str] = {}
            per_e: dict[str, dict[str, float]] = {e: {} for e in refs}
            for m in full:
                spec = METRICS[m]
                vals = {
                    e: float(
                        spec.fn(pred, r, weights_dir=weights_dir) if spec.needs_weights else spec.fn(pred, r)
                    )  # type: ignore[misc]
                    for e, r in refs.items()
                }
                best[m] = (max if spec.higher_is_better else min)(vals, key=vals.__getitem__)
                row[m] = vals[best[m]]
                for e, v in vals.items():
                    per_e[e][m] = v
            if hists:
                pooled = F.hist_scores(pred, list(refs.values()))
                row.update({m: pooled[m] for m in hists})
                for e, r in refs.items():
                    single = F.hist_scores(pred, r)
                    per_e[e].update({m: single[m] for m in hists})
            rows.append(row)
            item_rows.append({"id": it["id"], "best_expert": best})
            for e, vals_e in per_e.items():
                expert_rows[e].append(vals_e)
            preds.append(pred)
            if log and (i + 1) % 50 == 0:
                log(f"[eval] {t}: {i + 1}/{len(task['items'])}")
        for m in norefs:
            for row, s in zip(rows, scorers[m].score_batch(preds)):
                row[m] = float(s)
        tasks_out[t] = {
            "n": len(rows),
            "metrics": _mean(rows),
            "std": _std(rows, norefs),
            "per_expert": {e: {"n": len(r), **_mean(r)} for e, r in expert_rows.items()},
            "items": [{**ir, "metrics": r} for ir, r in zip(item_rows, rows)],
        }
        all_rows += rows
        for e, r in expert_rows.items():
            all_expert_rows.setdefault(e, []).extend(r)
    return {
        "bench": str(root),
        "kind": bench["kind"],
        "method": method or pred_dir.name,
        "n": len(all_rows),
        "metrics": _mean(all_rows),
        "std": _std(all_rows, norefs),
        "per_expert": {e: {"n": len(r), **_mean(r)} for e, r in all_expert_rows.items()},
        "tasks": tasks_out,
        "skipped": skipped,
        "resized": int(resized),
        "protocol": "best of experts for full-reference metrics; histograms against the pooled experts",
    }


def predict_with_model(
    bench_path: str | Path,
    model: str | Path,
    out: str | Path,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> Path:
    """Run a trained VeraRetouch on every benchmark input (FiveK: auto retouch; Aether-Bench: the
    item's prompt) and write ``out/TASK/ID.png``."""
    from aether_data.io.imaging import encode_png
    from model_core.inference import retouch

    bench = load_bench(bench_path)
    root, dst = Path(bench["root"]), Path(out)
    for t, task in bench["tasks"].items():
        (dst / t).mkdir(parents=True, exist_ok=True)
        for it in task["items"]:
            img, _ = retouch(str(model), str(root / it["input"]), it.get("prompt"), device=device)
            atomic_write_bytes(dst / t / f"{it['id']}.png", encode_png(img))
        if log:
            log(f"[eval] predicted {len(task['items'])} {t} images")
    return dst


def _fmt(name: str, value: float | None, std: float | None = None) -> str:
    if value is None:
        return "–"
    spec = METRICS[name]
    if spec.kind == "hist":
        return f"{100 * value:.2f}%"
    if spec.kind == "noref":
        return f"{value:.2f} ± {std:.2f}" if std is not None else f"{value:.2f}"
    return f"{value:.2f}" if name == "psnr" else f"{value:.3f}"


def _header(cols: Sequence[str], first: str) -> list[str]:
    labels = [f"{METRICS[c].label} {'↑' if METRICS[c].higher_is_better else '↓'}" for c in cols]
    return [f"| {first} | " + " | ".join(labels) + " |", "|" + "---|" * (len(cols) + 1)]


def markdown_tables(result: Mapping[str, Any]) -> str:
    """The paper-shaped table(s) (Table 1 for FiveK, Table 2 blocks for Aether-Bench) plus the
    per-expert table; metrics not computed show as –."""
    lines: list[str] = []
    for t, res in result["tasks"].items():
        cols = list(TABLE_COLUMNS.get(t, TABLE_COLUMNS["fivek"]))
        lines += [f"**{TASK_TITLES.get(t, t)}** (n = {res['n']})", ""]
        lines += _header(cols, "Method")
        cells = [_fmt(c, res["metrics"].get(c), res["std"].get(c)) for c in cols]
        lines += [f"| {result['method']} | " + " | ".join(cells) + " |", ""]
        if len(res["per_expert"]) > 1:
            ecols = [c for c in METRICS if METRICS[c].kind != "noref" and c in res["metrics"]]
            lines += [f"Per expert ({TASK_TITLES.get(t, t)}, each expert alone)", ""]
            lines += _header(ecols, "Expert")
            for e, vals in res["per_expert"].items():
                lines.append(f"| {e} | " + " | ".join(_fmt(c, vals.get(c)) for c in ecols) + " |")
            lines.append("")
    if result.get("skipped"):
        lines.append("Skipped: " + "; ".join(f"{k}: {v}" for k, v in result["skipped"].items()))
    return "\n".join(lines).rstrip() + "\n"
