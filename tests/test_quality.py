"""Issue 17: quality gates with deterministic redraws, N means N, and their measures."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aether_data.quality import (
    ciede2000,
    failed_gate,
    measure_pair,
    redraw_seed,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

# Sharma, Wu & Dalal (2005), "The CIEDE2000 color-difference formula", Table 1 (pairs 1, 7, 17, 25, 34)
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


def test_ciede2000_matches_the_reference_values() -> None:
    lab1 = np.array([p[0] for p in SHARMA])
    lab2 = np.array([p[1] for p in SHARMA])
    want = np.array([p[2] for p in SHARMA])
    assert np.allclose(ciede2000(lab1, lab2), want, atol=1e-4)
    assert np.allclose(ciede2000(lab2, lab1), want, atol=1e-4)  # symmetric


def test_compiled_mean_ciede2000_equals_the_reference() -> None:
    """The gates' mean (summed in the kernel, no per-pixel array) is the per-pixel values' mean: on
    Sharma's pairs and on the Lab thumbnails of real edits (hue wrap-around, greys with zero
    chroma, clipped pixels)."""
    import cv2

    from aether_data.color_difference import mean_ciede2000
    from aether_data.quality import lab_thumb

    for lab1, lab2, want in SHARMA:
        assert mean_ciede2000(np.array([lab1]), np.array([lab2])) == pytest.approx(want, abs=1e-4)
    img = _photo().astype(np.float32) / 255
    grey = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + 170) % 360  # hue rotated past the wrap
    rotated = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    for edited in (img, grey, rotated, np.clip(img * 1.8, 0, 1), np.zeros_like(img)):
        a, b = lab_thumb(img), lab_thumb(np.ascontiguousarray(edited))
        assert mean_ciede2000(a, b) == pytest.approx(float(ciede2000(a, b).mean()), rel=1e-9, abs=1e-9)


def test_pair_measurer_reused_across_redraws_equals_measure_pair() -> None:
    from aether_data.quality import PairMeasurer

    img = _photo()
    measurer = PairMeasurer(img)
    for delta in (0, 7, 40):
        edited = np.clip(img.astype(np.int16) + delta, 0, 255).astype(np.uint8)
        assert measurer.measure(edited) == measure_pair(img, edited)
        assert measurer.rgb_diff(edited) == measure_pair(img, edited)["rgb_diff"]
    assert measurer.measure(img[:-3, :-5]) == measure_pair(img, img[:-3, :-5])  # a pixel-off pair


@pytest.mark.parametrize("workflow", ["param"])
def test_a_previewing_workflow_draws_the_same_edit_at_thumbnail_size(workflow) -> None:
    """What ``previews`` promises: a draft on the gates' thumbnail with a copy of the random stream
    makes the same choices as the full-size draft, and its gate measures predict the full ones."""
    import copy

    from aether_data.config import load_spec
    from aether_data.io.imaging import box_shrink
    from aether_data.quality import THUMB_SHORT, PairMeasurer
    from aether_data.sampling import rng_for
    from aether_data.workflows import PlanRow, make_workflow

    spec = load_spec(None, workflow, {})
    wf = make_workflow(workflow, spec)
    assert wf.previews
    img = _photo()
    thumb = box_shrink(img, min(img.shape[:2]) // THUMB_SHORT)
    measurer = PairMeasurer(img)
    errors = []
    for i in range(12):
        row = PlanRow(i, f"k{i}", workflow, "s", 1000 + i, 0, "x")
        rng = rng_for(row.seed)
        small = wf.draft(row, thumb, copy.deepcopy(rng))
        full = wf.draft(row, img, rng)
        assert small.params == full.params and small.protocol == full.protocol
        errors.append(
            abs(measurer.measure(small.target)["delta_e"] - measurer.measure(full.target)["delta_e"])
        )
    assert max(errors) < 0.5, errors  # ΔE units: the floor is 1.5


def _photo() -> np.ndarray:
    from aether_data.io.imaging import load_image
    from aether_data.io.sources import bundled_photos

    return load_image(bundled_photos()[0], max_side=384, dtype=np.uint8)


def test_measures_see_noops_edits_and_lost_structure() -> None:
    img = _photo()
    same = measure_pair(img, img)
    assert same["delta_e"] == 0 and same["rgb_diff"] == 0 and same["grad_corr"] == pytest.approx(1.0)
    brighter = np.clip(img.astype(np.int16) + 20, 0, 255).astype(np.uint8)
    m = measure_pair(img, brighter)
    assert m["rgb_diff"] > 10 and m["delta_e"] > 3 and m["grad_corr"] > 0.9
    # a hard threshold wipes most edges and clips most pixels
    crushed = np.where(img > 100, 255, 0).astype(np.uint8)
    m = measure_pair(img, crushed)
    assert m["grad_corr"] < 0.9 and m["new_clipped"] > 0.3


def test_gates_in_order_with_the_texture_exemption() -> None:
    kw = dict(min_delta_e=1.5, min_rgb_diff=3.0, min_grad_corr=0.9, max_new_clipped=0.1)
    ok = {"delta_e": 5.0, "rgb_diff": 10.0, "grad_corr": 0.95, "new_clipped": 0.0}
    assert failed_gate(ok, **kw) is None
    assert failed_gate({**ok, "rgb_diff": 2.0}, **kw) == "visible"
    assert failed_gate({**ok, "delta_e": 1.0}, **kw) == "visible"
    assert failed_gate({**ok, "grad_corr": 0.5}, **kw) == "structure"
    assert failed_gate({**ok, "grad_corr": 0.5}, texture=True, **kw) is None
    assert failed_gate({**ok, "new_clipped": 0.3}, **kw) == "clipping"
    worse = {"aesthetic_input": 6.0, "aesthetic_target": 5.0}
    assert failed_gate(ok, scores=worse, target_not_worse=True, **kw) == "aesthetic"
    assert failed_gate(ok, scores=worse, **kw) is None


def test_redraw_seeds_are_children_of_the_sample_seed() -> None:
    seeds = [redraw_seed(123, k) for k in range(1, 6)]
    assert seeds == [redraw_seed(123, k) for k in range(1, 6)]
    assert len(set(seeds)) == 5 and 123 not in seeds
    assert redraw_seed(124, 1) != seeds[0]


def test_gate_cost_per_pair_is_small() -> None:
    import time

    img = _photo()
    other = np.clip(img.astype(np.int16) + 9, 0, 255).astype(np.uint8)
    measure_pair(img, other)
    t = time.thread_time()
    for _ in range(10):
        measure_pair(img, other)
    per_pair = (time.thread_time() - t) / 10
    assert per_pair < 0.05, per_pair  # ~2-4 ms measured on 512x768 pairs


def test_quality_spec_defaults_are_documented() -> None:
    from aether_data.config import load_spec

    spec = load_spec(None, "param")
    q = spec.quality
    assert q.enabled and q.max_redraws >= 1
    assert q.param.min_rgb_diff == 3.0 and q.param.min_grad_corr == 0.9
    assert q.auto.target_not_worse and not q.param.target_not_worse
    assert spec.sources.precheck and spec.sources.replacements >= 1


# -- builds ----------------------------------------------------------------------------------------


def _records(out: Path) -> list[dict]:
    from quality_pass import iter_pairs

    return [rec for rec, _, _ in iter_pairs(out)]


def _share(out: Path) -> dict:
    from quality_pass import measure_dataset

    return measure_dataset(out)


@pytest.mark.parametrize("workflow", ["param", "style"])
def test_gated_builds_write_visible_structure_keeping_pairs(workflow, ray_session, tmp_path) -> None:
    """Fast version of the acceptance measure (24 samples at 256 px; the 64-sample one is slow)."""
    from conftest import run_cli

    out = tmp_path / workflow
    code, text = run_cli(
        "build", "--workflow", workflow, "--num-samples", "24", "--samples-per-shard", "12",
        "--image-size", "256", "--workers", "1", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert code == 0, text
    r = _share(out)
    print(json.dumps(r))
    assert r["pass_share"] >= 0.98, r
    manifest = json.loads((out / "manifest.json").read_text())
    written = manifest["samples"]
    rejected = sum(v for k, v in manifest["skipped"]["reasons"].items() if k.startswith("quality:"))
    assert written + manifest["skipped"]["count"] == 24 and rejected <= 1
    for rec in _records(out):
        q = rec["quality"]
        assert q["rgb_diff"] >= 3.0 and (q["grad_corr"] >= 0.9 or q["texture_edit"])


@pytest.mark.slow
@pytest.mark.parametrize("workflow", ["auto", "param", "style"])
def test_acceptance_64_sample_builds_pass_98_percent(workflow, ray_session, tmp_path) -> None:
    from conftest import run_cli

    out = tmp_path / workflow
    code, text = run_cli("build", "--workflow", workflow, "--workers", "2", "--out", str(out), "--quiet")
    assert code == 0, text
    r = _share(out)
    print(json.dumps(r))
    assert r["pass_share"] >= 0.98, r


def make_broken_folder(root: Path, good: int = 8) -> Path:
    """`good` JPEGs cut from the bundled photos and 5 broken files (empty, garbage, truncated, text,
    too small)."""
    from aether_data.io.imaging import load_image
    from aether_data.io.sources import bundled_photos

    root.mkdir(parents=True, exist_ok=True)
    photos = bundled_photos()
    for i in range(good):
        img = load_image(photos[i % len(photos)], max_side=640, dtype=np.uint8)
        if i >= len(photos):  # distinct pictures: a crop of the photo
            img = img[: img.shape[0] * 3 // 4, : img.shape[1] * 3 // 4]
        Image.fromarray(img).save(root / f"good_{i}.jpg", quality=92)
    (root / "broken_empty.jpg").write_bytes(b"")
    (root / "broken_garbage.jpg").write_bytes(bytes(range(256)) * 8)
    whole = (root / "good_0.jpg").read_bytes()
    (root / "broken_truncated.jpg").write_bytes(whole[: len(whole) // 3])
    (root / "broken_text.png").write_text("not an image\n")
    Image.new("RGB", (4, 4)).save(root / "broken_tiny.png")
    return root


def test_precheck_leaves_broken_sources_out(tmp_path) -> None:
    from aether_data.build.precheck import usable_sources
    from aether_data.io.sources import list_sources

    folder = make_broken_folder(tmp_path / "src")
    good, rejected = usable_sources(list_sources(folder), 100_000_000)
    assert len(good) == 8 and all("good_" in g for g in good)
    assert rejected["count"] == 5
    assert set(rejected["reasons"]) <= {
        "empty-file",
        "not-an-image",
        "truncated",
        "too-small",
        "decode-error",
    }


def _tree_digest(out: Path) -> dict[str, str]:
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        # the dataset card (README.md) names the output folder in its loading examples
        if p.is_file() and p.name not in ("run.json", "README.md") and "logs" not in p.relative_to(out).parts
    }


def _n_means_n(tmp_path: Path, size: str, n: int) -> None:
    from conftest import run_cli

    folder = make_broken_folder(tmp_path / "src")
    digests = []
    for workers in ("1", "2"):
        out = tmp_path / f"out{workers}"
        code, text = run_cli(
            "build", "--workflow", "param", "--sources", str(folder), "--num-samples", str(n),
            "--samples-per-shard", "16", "--image-size", size, "--workers", workers,
            "--out", str(out), "--quiet",
        )  # fmt: skip
        assert code == 0, text
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["samples"] == n, manifest["skipped"]
        assert manifest["sources_rejected"]["count"] == 5
        digests.append(_tree_digest(out))
    assert digests[0] == digests[1]


def test_broken_sources_do_not_cost_samples_fast(ray_session, tmp_path) -> None:
    """8 good + 5 broken sources, 64 samples asked, 64 written, same bytes on 1 and 2 workers."""
    _n_means_n(tmp_path, "128", 64)


@pytest.mark.slow
def test_broken_sources_do_not_cost_samples_default_size(ray_session, tmp_path) -> None:
    _n_means_n(tmp_path, "512", 64)


def test_failing_source_is_replaced_deterministically(tmp_path) -> None:
    """A source that fails at build time (here: the precheck is off) is replaced by the plan's next."""
    from aether_data.build.plan import Planner, iter_shard_spans
    from aether_data.build.shard import ShardContext, ShardTask
    from aether_data.config import load_spec
    from aether_data.io.sources import list_sources

    folder = make_broken_folder(tmp_path / "src", good=3)
    spec = load_spec(
        None,
        "param",
        {
            "num_samples": 12,
            "samples_per_shard": 12,
            "image": {"size": 96},
            "sources": {"path": str(folder), "precheck": False},
        },
    )
    sources = list_sources(folder)
    planner = Planner(spec, sources)
    span = next(iter(iter_shard_spans(spec)))
    results = []
    for _ in range(2):
        ctx = ShardContext(spec, tmp_path / f"out{len(results)}")
        ctx.renderer.alternate = planner.alternate
        res = ctx.build_shard(ShardTask(span.name, "param", planner.rows(span)))
        results.append(
            (res["samples"], (tmp_path / f"out{len(results)}" / "shards" / f"{span.name}.tar").read_bytes())
        )
    assert results[0][0] == 12
    assert results[0] == results[1]
