"""Aether-Bench from a built dataset: held-out sources recorded in bench.json and split.json; the
disjointness check names every training sample that uses a held-out source, and passes a build
made only from the other photos; scoring the ground truth gives the perfect figures."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from aether_data.evaluation import check_disjoint
from aether_data.io.sources import bundled_photos
from tests.conftest import run_cli


def _build(out: Path, sources: str | None = None) -> Path:
    args = ["build", "--workflow", "param", "--num-samples", "12", "--samples-per-shard", "6"]
    args += ["--image-size", "128", "--out", str(out), "--seed", "3", "--workers", "1", "--quiet"]
    if sources:
        args += ["--sources", sources]
    code, text = run_cli(*args)
    assert code == 0, text
    return out


@pytest.fixture(scope="module")
def dataset(ray_session, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("aether_ds") / "ds")


def test_aether_bench_split_and_disjointness(dataset: Path, tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    code, text = run_cli(
        "benchmark", "build", "--kind", "aether", "--data", str(dataset), "--out", str(bench),
        "--holdout-sources", "2",
    )  # fmt: skip
    assert code == 0, text
    doc = json.loads((bench / "bench.json").read_text())
    split = json.loads((bench / "split.json").read_text())
    assert doc["split"] == split and len(split["sources"]) == 2
    items = doc["tasks"]["param"]["items"]
    assert items and {it["source_sha256"] for it in items} <= set(split["sources"])
    for it in items:
        assert (bench / it["input"]).is_file() and (bench / it["targets"]["gt"]).is_file()

    # the dataset the bench was cut from uses the held-out sources: every such sample is named
    rep = check_disjoint(bench, dataset)
    assert not rep["ok"]
    named = {o["key"] for o in rep["overlap"]}
    assert {it["id"] for it in items} <= named
    assert all(o["what"] == "source" and o["value"] in split["sources"] for o in rep["overlap"])
    code, text = run_cli("benchmark", "check-disjoint", "--bench", str(bench), "--data", str(dataset))
    assert code == 1 and "uses held-out source" in text
    # `aether audit --bench` proves the same as part of the audit: it fails and names each sample
    code, text = run_cli("audit", str(dataset), "--bench", str(bench), "--json")
    audit_doc = json.loads(text[text.index("{") :])
    assert code == 1 and not audit_doc["ok"]
    assert {o["key"] for o in audit_doc["disjoint"][0]["overlap"]} == named
    assert sum("uses held-out source" in p["message"] for p in audit_doc["problems"]) == len(named)

    # a training build from the other photos only is disjoint
    by_sha = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in bundled_photos()}
    assert set(split["sources"]) <= set(by_sha)
    keep = [str(p) for sha, p in by_sha.items() if sha not in split["sources"]]
    (tmp_path / "train.txt").write_text("\n".join(keep) + "\n")
    train = _build(tmp_path / "train", str(tmp_path / "train.txt"))
    code, text = run_cli("benchmark", "check-disjoint", "--bench", str(bench), "--data", str(train))
    assert code == 0, text
    code, text = run_cli("audit", str(train), "--bench", str(bench / "split.json"))
    assert code == 0 and "held-out split" in text and "disjoint" in text, text

    # ground truth as predictions: perfect fidelity, Table 2 (Param) layout
    pred = tmp_path / "pred" / "param"
    pred.mkdir(parents=True)
    for it in items:
        src = bench / it["targets"]["gt"]
        (pred / f"{it['id']}{src.suffix}").write_bytes(src.read_bytes())
    code, text = run_cli(
        "eval", "--bench", str(bench), "--predictions", str(tmp_path / "pred"), "--json", "-",
        "--metrics", "l1,psnr,ssim,gmsd,td",
    )  # fmt: skip
    assert code == 0, text
    r = json.loads(text)
    m = r["tasks"]["param"]["metrics"]
    assert r["n"] == len(items) and m["l1"] == 0.0 and m["psnr"] == 100.0 and m["td"] == 0.0
    assert m["ssim"] == pytest.approx(1.0) and m["gmsd"] == pytest.approx(0.0, abs=1e-6)
