"""The bundled trainer end to end on CPU: a 64-sample `aether build --workflow all` dataset, the tiny
random config, 30 steps of align → rsft → dapo, reload, resume, retouch and eval."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from aether_data.config import deep_merge
from aether_data.contract import RETOUCH_SEQUENCE
from model_core.inference import evaluate, retouch, retouch_detailed, save_result
from model_core.model_build import build_model
from model_core.model_io import load_model, read_tensors
from model_core.shards import discover_shards
from model_core.train.config import TINY, load_config
from model_core.train.metrics_log import read_metrics
from model_core.train.stage import train_stage

STEPS = 30
PHOTO = Path(__file__).resolve().parents[1] / "aether_data" / "data" / "photos" / "chelsea.jpg"
# Each stage streams the 64-sample build (30 steps × batch 2 ≈ one epoch). With `fixed_batch` (one
# batch of 2 samples repeated 30 times) a stage only overfits those 2 samples, and what carries over
# to held-out data is luck: after the official prompts it measured no render-L1 gain at all (RSFT
# 0.2614 → 0.2615, auto PSNR 9.91 → 9.72 dB). Streamed, every held-out margin below is real.
SMOKE = deep_merge(TINY, {"dapo": {"max_new_tokens": 16}})


@pytest.fixture(scope="module")
def dataset(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The issue's acceptance build: `aether build --workflow all`, 64 samples, 16 per shard, 128 px."""
    from conftest import run_cli

    from model_core.er_io import DEFAULT_CHECKPOINT

    root = tmp_path_factory.mktemp("vera")
    extra: list[str] = []
    if not DEFAULT_CHECKPOINT.exists():
        # without the shipped E/R weights the auto workflow can only use its random-operator branch
        spec = root / "all.yaml"
        spec.write_text(
            "workflow: all\nmix: {param: 1.0, style: 1.0, auto: 1.0}\nauto: {supplementary_fraction: 1.0}\n"
        )
        extra = ["--config", str(spec)]
    code, text = run_cli(
        "build", "--workflow", "all", "--num-samples", "64", "--samples-per-shard", "16",
        "--image-size", "128", "--out", str(root / "ds"), "--quiet", *extra,
    )  # fmt: skip
    assert code == 0, text
    return root / "ds"


@pytest.fixture(scope="module")
def heldout(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Held-out data: another `--workflow all` build (seed 1234: other crops, params, presets)."""
    from conftest import run_cli

    root = tmp_path_factory.mktemp("heldout")
    code, text = run_cli(
        "build", "--workflow", "all", "--num-samples", "24", "--samples-per-shard", "8",
        "--image-size", "128", "--seed", "1234", "--out", str(root / "ds"), "--quiet",
    )  # fmt: skip
    assert code == 0, text
    return root / "ds"


def _heldout_losses(model: Any, data: Path, tasks: list[str] | None, n_batches: int = 8) -> dict[str, float]:
    """Teacher-forced CE (completion tokens) and render L1 on `n_batches` fixed held-out batches,
    plus the identity baseline's L1 (input vs target) on the same batches."""
    import contextlib
    from types import SimpleNamespace

    from model_core.data import make_loader
    from model_core.encoding import TokenSpec
    from model_core.train.align import sft_loss

    loader = make_loader([data], TokenSpec.from_model(model), load_config(TINY).data, tasks=tasks, seed=0)
    ctx = SimpleNamespace(model=model, autocast=contextlib.nullcontext)
    model.eval()
    ce, l1, ident = [], [], []
    with torch.no_grad():
        for _ in range(n_batches):
            b = next(loader)
            _, st = sft_loss(ctx, b, 1.0)  # type: ignore[arg-type]
            ce.append(st["ce"])
            l1.append(st["l1"])
            ident.append(float((b["render_in"].float() - b["render_tgt"].float()).abs().mean()))
    return {"ce": _mean(ce), "l1": _mean(l1), "identity_l1": _mean(ident)}


def _untrained() -> Any:
    cfg = load_config(SMOKE)
    return build_model(cfg.model, cfg.renderer, seed=0)  # what every stage run starts from


# Held-out baselines, measured (CPU, torch 1 thread, the 24-sample seed-1234 build; 8 fixed batches;
# official prompts, streamed training):
#                         CE param   CE all   L1 param   L1 all
#   untrained model        6.973      6.972     0.2958    0.2614
#   align (30 steps)       2.045      5.752     0.2463    0.2347
#   rsft  (30 steps)       2.887      3.948     0.2457    0.2319
#   dapo  (30 steps)       4.463      5.023     0.2450    0.2296
#   identity (input)         -          -       0.0217    0.050
# evaluate() PSNR, 4 held-out samples per task (auto / param / style), dB:
#   untrained 9.91 / 10.43 / 11.68 · rsft 11.13 / 12.73 / 13.28 · dapo 11.54 / 12.74 / 13.22
# Re-measured after the quality gates, the type-stable records and the template wording changed the
# data (and DAPO's tiny lr went 1e-3 → 3e-4): CE all / L1 all untrained 6.965 / 0.2627, rsft
# 3.821 / 0.2359, dapo 4.550 / 0.2359; PSNR untrained 9.66 / 10.23 / 11.32, rsft 10.76 / 11.98 /
# 13.29, dapo 10.73 / 11.90 / 13.24.
# The tiny renderer is random (and frozen), far from identity, so the baseline these smoke runs must
# beat with a margin is the untrained model they start from; the margins below are about 70% of the
# measured ones. How far the untrained model is from what the renderer can reach depends on the
# random draw (untrained held-out L1 0.22 to 0.38 over build seeds 0-4; the 0.342 of the first
# measurement was already 0.261 before the official prompts landed, at 8165fb0, after the region
# task token grew the vocabulary), which is why the bars are relative to the untrained model.
@pytest.fixture(scope="module")
def untrained_heldout(heldout: Path) -> dict[str, dict[str, float]]:
    m = _untrained()
    return {"param": _heldout_losses(m, heldout, ["param"]), "all": _heldout_losses(m, heldout, None)}


@pytest.fixture(scope="module")
def runs(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    root = tmp_path_factory.mktemp("runs")
    out: dict[str, dict[str, Any]] = {}
    prev = None
    for stage in ("align", "rsft", "dapo"):
        out[stage] = train_stage(
            stage, [dataset], SMOKE, max_steps=STEPS, out_dir=root / stage, init_from=prev, log=None
        )
        prev = out[stage]["model"]
    return out


def _mean(xs: list[float]) -> float:
    return float(np.mean(xs))


def test_align_loss_falls_and_vision_stays_frozen(
    runs: dict[str, dict[str, Any]], heldout: Path, untrained_heldout: dict[str, dict[str, float]]
) -> None:
    r = runs["align"]
    assert r["step"] == STEPS and r["tasks"] == ["param"]
    losses = r["losses"]
    # streamed batches (measured: first 5 steps 6.81, last 5 2.59)
    assert _mean(losses[-5:]) < 0.5 * _mean(losses[:5]), losses
    # on held-out param samples, against the untrained model (measured: CE 6.973 → 2.045,
    # L1 0.2958 → 0.2463)
    base, got = untrained_heldout["param"], _heldout_losses(load_model(r["model"]), heldout, ["param"])
    assert got["ce"] <= base["ce"] - 3.4, (got, base)
    assert got["l1"] <= base["l1"] - 0.035, (got, base)
    ce = [h["ce"] for h in r["history"]]
    assert ce[-1] < ce[0]
    fresh = build_model(load_config(SMOKE).model, load_config(SMOKE).renderer, seed=0).state_dict()
    trained, meta = read_tensors(Path(r["model"]) / "model.safetensors")
    assert meta["stage"] == "align" and meta["step"] == str(STEPS)
    for k, v in fresh.items():
        if ".vision_tower." in k or k.startswith("renderer."):
            assert torch.equal(trained[k], v), k
    assert not torch.equal(trained["adaptor.net.0.weight"], fresh["adaptor.net.0.weight"])


def test_rsft_trains_only_the_llm(
    runs: dict[str, dict[str, Any]],
    dataset: Path,
    heldout: Path,
    untrained_heldout: dict[str, dict[str, float]],
) -> None:
    r = runs["rsft"]
    losses = r["losses"]
    # streamed batches of mixed tasks (measured: first 5 steps 6.90, last 5 4.60)
    assert _mean(losses[-5:]) < 0.77 * _mean(losses[:5]), losses
    # on held-out samples of every task, against the untrained model (measured: CE 6.972 → 3.948,
    # L1 0.2614 → 0.2319)
    base, got = untrained_heldout["all"], _heldout_losses(load_model(r["model"]), heldout, None)
    assert got["ce"] <= base["ce"] - 2.1, (got, base)
    assert got["l1"] <= base["l1"] - 0.02, (got, base)
    assert set(r["tasks"]) == set(discover_shards([dataset])) >= {"param", "auto"}
    aligned, _ = read_tensors(Path(runs["align"]["model"]) / "model.safetensors")
    tuned, _ = read_tensors(Path(r["model"]) / "model.safetensors")
    for k in tuned:
        if k.startswith(
            ("adaptor.", "renderer.", "vlm.model.vision_tower.", "vlm.model.multi_modal_projector.")
        ):
            assert torch.equal(tuned[k], aligned[k]), k
    assert not torch.equal(tuned["vlm.lm_head.weight"], aligned["vlm.lm_head.weight"])


def test_dapo_runs_single_task_steps_with_bounded_rewards(runs: dict[str, dict[str, Any]]) -> None:
    r = runs["dapo"]
    hist = r["history"]
    assert len(hist) == STEPS
    for h in hist:
        assert h["task"] in ("param", "auto", "style")
        for k in ("r_format", "r_similarity", "r_aesthetic"):
            v = h[k]
            assert np.isnan(v) or 0.0 <= v <= 1.0, (k, v)
        assert np.isnan(h["r_aesthetic"]) == (h["task"] != "auto")  # aesthetic reward only on auto
        # dynamic sampling, hand-worked for batch 2 and one resample round: a first round that keeps
        # both groups stops there; otherwise a second round of 2 runs, every all-equal group of the
        # 4 is dropped, and at most 2 are kept (none when all 4 were dropped)
        assert h["rounds"] in (1, 2), h
        if h["rounds"] == 1:
            assert (h["kept_groups"], h["dropped_groups"]) == (2, 0), h
        else:
            assert h["dropped_groups"] >= 1 and h["kept_groups"] == min(4 - h["dropped_groups"], 2), h
    assert sum(h["kept_groups"] for h in hist) > 0  # some steps did learn
    # the clipped token-level surrogate falls within each rollout batch's updates
    assert _mean([h["loss_last"] - h["loss_first"] for h in hist]) < 0
    rows = read_metrics(Path(r["model"]).parent)
    assert len(rows) == STEPS and {"reward", "r_format", "kept_groups"} <= set(rows[0])


def test_dapo_keeps_what_rsft_learned_on_held_out_data(
    runs: dict[str, dict[str, Any]], heldout: Path, untrained_heldout: dict[str, dict[str, float]]
) -> None:
    """30 DAPO steps do not improve held-out metrics over their RSFT init (PSNR param 11.98 → 11.90,
    style 13.29 → 13.24 dB); what they must keep is RSFT's lead over the untrained model, measured
    (after the quality gates and the template wording changed the data): CE 6.965 → 4.550 (RSFT
    3.821), L1 0.2627 → 0.2359 and PSNR +1.67 dB (param), +1.92 dB (style). At the former DAPO lr of
    1e-3 the same 30 steps undid it (CE 6.79, param +0.44 dB): this test caught that."""
    got = _heldout_losses(load_model(runs["dapo"]["model"]), heldout, None)
    assert got["ce"] <= untrained_heldout["all"]["ce"] - 1.7, got
    assert got["l1"] <= untrained_heldout["all"]["l1"] - 0.019, got
    base = evaluate(_untrained(), [heldout], tasks=["param", "style"], max_samples=4)["tasks"]
    rep = evaluate(runs["dapo"]["model"], [heldout], tasks=["param", "style"], max_samples=4)["tasks"]
    # measured: param 10.23 → 11.90, style 11.32 → 13.24 dB
    assert rep["param"]["psnr"] >= base["param"]["psnr"] + 1.17, (rep, base)
    assert rep["style"]["psnr"] >= base["style"]["psnr"] + 1.35, (rep, base)


def test_metrics_csv_and_safetensors_only(runs: dict[str, dict[str, Any]]) -> None:
    out = Path(runs["align"]["model"]).parent
    with (out / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == STEPS and float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert not [p for p in out.rglob("*") if p.suffix in (".pt", ".pth", ".bin", ".pkl")]


def test_checkpoint_reloads_and_resumes(
    runs: dict[str, dict[str, Any]], dataset: Path, tmp_path: Path
) -> None:
    src = Path(runs["align"]["model"]).parent
    model = load_model(src)
    assert model.config.model_copy(update={"image_tokens": None}) == load_config(SMOKE).model
    copy = tmp_path / "align"
    shutil.copytree(src, copy)
    more = train_stage("align", [dataset], SMOKE, max_steps=STEPS + 3, out_dir=copy, log=None)
    assert more["start_step"] == STEPS and more["step"] == STEPS + 3 and len(more["losses"]) == 3
    assert len(read_metrics(copy)) == STEPS + 3
    done = train_stage("align", [dataset], SMOKE, max_steps=STEPS + 3, out_dir=copy, log=None)
    assert done["losses"] == []  # nothing left to do
    with pytest.raises(ValueError, match="differs"):
        train_stage(
            "align",
            [dataset],
            deep_merge(SMOKE, {"align": {"lr": 0.1}}),
            max_steps=40,
            out_dir=copy,
            log=None,
        )


def test_retouch_gives_image_and_tagged_completion(runs: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    model_dir = runs["dapo"]["model"]
    image, completion = retouch(model_dir, PHOTO)
    assert image.dtype == np.float32 and image.ndim == 3 and 0.0 <= image.min() <= image.max() <= 1.0
    assert completion.endswith(RETOUCH_SEQUENCE)
    res = retouch_detailed(model_dir, PHOTO, params={"Exposure2012": 0.5, "Contrast2012": 20})
    assert res.workflow == "param" and "'Exposure2012': 0.1, 'Contrast2012': 0.2," in res.prompt
    assert res.image.shape == image.shape and res.completion.endswith(RETOUCH_SEQUENCE)
    style = retouch_detailed(model_dir, PHOTO, prompt="make it look like warm film")
    assert style.workflow == "style" and style.prompt.startswith("<Style_Retouch_Task>")
    img_path, txt_path = save_result(image, completion, tmp_path / "out.jpg")
    assert img_path.stat().st_size > 0 and txt_path.read_text(encoding="utf-8") == completion + "\n"


def test_evaluate_reports_per_task_metrics(runs: dict[str, dict[str, Any]], heldout: Path) -> None:
    rep = evaluate(runs["rsft"]["model"], [heldout], max_samples=4)
    base = evaluate(_untrained(), [heldout], max_samples=4)
    tasks = set(discover_shards([heldout]))
    assert set(rep["tasks"]) == tasks == {"param", "style", "auto"} and rep["samples"] == 4 * len(tasks)
    for t, m in rep["tasks"].items():
        assert {"psnr", "ssim", "hist_luminance", "hist_contrast", "hist_saturation", "format_valid"} <= set(
            m
        )
        assert 0.0 <= m["hist_luminance"] <= 1.0
        # measured against the untrained model: auto 9.66 → 10.76, param 10.23 → 11.98, style
        # 11.32 → 13.29 dB; bars about 70% of each gain
        gain = {"auto": 0.75, "param": 1.2, "style": 1.35}[t]
        assert m["psnr"] >= base["tasks"][t]["psnr"] + gain, (t, m["psnr"], base["tasks"][t]["psnr"])
    assert ("lpips" in rep["all"]) == rep["lpips_available"]


def test_er_stage_routes_to_the_er_trainer(tmp_path: Path) -> None:
    r = train_stage("er", [], "tiny", max_steps=2, out_dir=tmp_path / "er", log=None)
    assert r["step"] == 2 and Path(r["model"]).is_file()
    with pytest.raises(ValueError, match="unknown stage"):
        train_stage("sft", [], "tiny")


@pytest.mark.slow
def test_two_ray_train_workers(dataset: Path, tmp_path: Path) -> None:
    """Ray Train TorchTrainer with 2 CPU workers (DDP over gloo): ~70 s on 2 busy cores."""
    r = train_stage("align", [dataset], TINY, max_steps=4, out_dir=tmp_path / "ddp", num_workers=2, log=None)
    assert r["world"] == 2 and r["step"] == 4
    # the DDP run's saved model is a real, trained model: it loads, and it moved away from the
    # untrained weights it started from (vision tower frozen, adaptor trained)
    trained, meta = read_tensors(Path(r["model"]) / "model.safetensors")
    fresh = build_model(load_config(TINY).model, load_config(TINY).renderer, seed=0).state_dict()
    assert meta["stage"] == "align" and meta["step"] == "4"
    assert not torch.equal(trained["adaptor.net.0.weight"], fresh["adaptor.net.0.weight"])
    assert all(torch.equal(trained[k], v) for k, v in fresh.items() if ".vision_tower." in k)
    model = load_model(r["model"])
    assert set(model.state_dict()) == set(fresh)
