"""FiveK-Bench end to end through the CLI: a five-expert benchmark built from the bundled photos with
known edits; best-of-five picks the expert a prediction was made from; the identity prediction
gives exactly the figures computed independently (scikit-image / numpy)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from aether_data.io.imaging import encode_png, load_image
from aether_data.io.sources import bundled_photos
from tests.conftest import run_cli

EXPERTS = "ABCDE"


def edit(img: np.ndarray, expert: str) -> np.ndarray:
    """Five clearly different, known retouches."""
    if expert == "A":  # brighter
        out = img * 1.25 + 0.03
    elif expert == "B":  # more contrast
        out = (img - 0.5) * 1.5 + 0.5
    elif expert == "C":  # gamma lift
        out = img**0.6
    elif expert == "D":  # desaturate
        out = 0.3 * img + 0.7 * (img @ np.array([0.299, 0.587, 0.114]))[..., None]
    else:  # warm
        out = img * np.array([1.15, 1.0, 0.8])
    return np.clip(out, 0, 1).astype(np.float32)


def _png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(img))


@pytest.fixture(scope="module")
def fivek(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("fivek")
    stems = []
    for p in bundled_photos():
        img = load_image(p, max_side=64)
        stems.append(p.stem)
        _png(root / "src" / "input" / f"{p.stem}.png", img)
        for e in EXPERTS:
            _png(root / "src" / f"expert{e}" / f"{p.stem}.png", edit(img, e))
    # an input with no expert retouch is not part of the benchmark
    _png(root / "src" / "input" / "orphan.png", load_image(bundled_photos()[0], max_side=64))
    code, text = run_cli(
        "benchmark", "build", "--kind", "fivek", "--fivek", str(root / "src"), "--out", str(root / "bench")
    )
    assert code == 0, text
    return {"root": root, "bench": root / "bench", "stems": sorted(stems)}


def _read(p: Path) -> np.ndarray:
    return load_image(p).astype(np.float64)


def test_bench_layout(fivek: dict[str, object]) -> None:
    bench = json.loads((fivek["bench"] / "bench.json").read_text())
    task = bench["tasks"]["fivek"]
    assert task["experts"] == list(EXPERTS)
    assert [it["id"] for it in task["items"]] == fivek["stems"]  # orphan dropped
    assert bench["split"]["unmatched_inputs"] == 1


def test_best_of_five_picks_the_source_expert(fivek: dict[str, object], tmp_path: Path) -> None:
    src = fivek["root"] / "src"
    made_from = {}
    rng = np.random.default_rng(0)
    for i, stem in enumerate(fivek["stems"]):
        e = EXPERTS[i % 5]
        made_from[stem] = e
        noisy = np.clip(_read(src / f"expert{e}" / f"{stem}.png") + rng.normal(0, 0.01, (1,)), 0, 1)
        _png(tmp_path / "pred" / f"{stem}.png", noisy.astype(np.float32))
    code, text = run_cli(
        "eval", "--bench", str(fivek["bench"]), "--predictions", str(tmp_path / "pred"),
        "--json", str(tmp_path / "r.json"), "--metrics", "l1,psnr,ssim,gmsd,hist_l,hist_c,hist_s,hist_m",
    )  # fmt: skip
    assert code == 0, text
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["n"] == len(fivek["stems"])
    for item in r["tasks"]["fivek"]["items"]:
        assert item["best_expert"]["psnr"] == made_from[item["id"]]
        assert item["best_expert"]["ssim"] == made_from[item["id"]]
        assert item["best_expert"]["l1"] == made_from[item["id"]]
    assert sorted(r["per_expert"]) == list(EXPERTS)
    # best of five is at least as good as every single expert
    for e in EXPERTS:
        assert r["metrics"]["psnr"] >= r["per_expert"][e]["psnr"]
    # the markdown: a Table-1-shaped row and one per-expert row per expert
    assert "| Method | PSNR ↑ | SSIM ↑ | LPIPS ↓ | Hist-L ↑" in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and ln[2] in EXPERTS and ln[3] == " "]
    assert [ln[2] for ln in rows] == list(EXPERTS)


def _ssim(x: np.ndarray, y: np.ndarray) -> float:
    opts = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    return structural_similarity(x, y, channel_axis=2, data_range=1.0, **opts)


def test_identity_prediction_equals_independent_figures(fivek: dict[str, object], tmp_path: Path) -> None:
    src = fivek["root"] / "src"
    code, text = run_cli(
        "eval", "--bench", str(fivek["bench"]), "--predictions", str(src / "input"), "--json", "-",
        "--metrics", "l1,psnr,ssim,hist_l,hist_s",
    )  # fmt: skip
    assert code == 0, text
    r = json.loads(text)
    w = np.array([0.299, 0.587, 0.114])

    def sat(x: np.ndarray) -> np.ndarray:
        mx, mn = x.max(2), x.min(2)
        return np.where(mx > 1e-6, (mx - mn) / np.maximum(mx, 1e-6), 0)

    def hist(values: list[np.ndarray]) -> np.ndarray:
        h = sum(np.histogram(v.ravel(), bins=64, range=(0, 1))[0] for v in values)
        return h / h.sum()

    exp = {"l1": [], "psnr": [], "ssim": [], "hist_l": [], "hist_s": []}
    for stem in fivek["stems"]:
        x = _read(src / "input" / f"{stem}.png")
        refs = [_read(src / f"expert{e}" / f"{stem}.png") for e in EXPERTS]
        exp["psnr"].append(max(peak_signal_noise_ratio(r_, x, data_range=1.0) for r_ in refs))
        exp["ssim"].append(max(_ssim(x, r_) for r_ in refs))
        exp["l1"].append(min(np.abs(x - r_).mean() for r_ in refs))
        exp["hist_l"].append(np.minimum(hist([x @ w]), hist([r_ @ w for r_ in refs])).sum())
        exp["hist_s"].append(np.minimum(hist([sat(x)]), hist([sat(r_) for r_ in refs])).sum())
    for k, v in exp.items():
        # float32 luma in the library vs float64 here can move a pixel across a bin edge
        tol = 1e-3 if k.startswith("hist") else 1e-5
        assert r["metrics"][k] == pytest.approx(float(np.mean(v)), abs=tol, rel=1e-5), k


def test_missing_prediction_and_bad_args(
    fivek: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached VGG16 here
    monkeypatch.delenv("AETHER_METRIC_WEIGHTS", raising=False)
    (tmp_path / "pred").mkdir()
    code, text = run_cli("eval", "--bench", str(fivek["bench"]), "--predictions", str(tmp_path / "pred"))
    assert code == 1 and "prediction(s) missing" in text
    code, text = run_cli("eval", "--bench", str(fivek["bench"]))
    assert code == 2 and "exactly one of --model" in text
    code, text = run_cli(
        "eval", "--bench", str(fivek["bench"]), "--predictions", str(fivek["root"] / "src" / "input"),
        "--metrics", "dists", "--weights-dir", str(tmp_path),
    )  # fmt: skip
    assert code == 1 and "vgg16-397923af.pth" in text


def test_model_mode_runs_the_model_on_every_input(
    fivek: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--model: each benchmark input goes through model_core.inference.retouch (auto: no prompt) and
    the outputs are scored like predictions (here a stand-in model that returns its input)."""
    import model_core.inference as inference

    calls = []

    def fake_retouch(
        model: str, image: str, prompt: str | None = None, **kw: object
    ) -> tuple[np.ndarray, str]:
        calls.append((model, Path(image).stem, prompt))
        return load_image(image), ""

    monkeypatch.setattr(inference, "retouch", fake_retouch)
    args = ["--metrics", "psnr,l1", "--json", "-"]
    code, text = run_cli("eval", "--bench", str(fivek["bench"]), "--model", str(tmp_path / "m"), *args)
    assert code == 0, text
    by_model = json.loads(text[text.index("{") :])  # after the progress line (stderr)
    assert sorted(c[1] for c in calls) == fivek["stems"] and {c[2] for c in calls} == {None}
    code, text = run_cli(
        "eval", "--bench", str(fivek["bench"]), "--predictions", str(fivek["root"] / "src" / "input"), *args
    )
    assert by_model["metrics"] == json.loads(text)["metrics"] and by_model["method"] == "m"
