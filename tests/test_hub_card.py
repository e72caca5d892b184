"""One record schema for every workflow, and the Hub-style dataset card: a `--workflow all` build
loads with `datasets` (webdataset data_files, the folder, one config), and the card's front matter
parses and carries the Hub's fields."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import yaml
from conftest import run_cli


@pytest.fixture(scope="module")
def small_all(ray_session, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hub") / "out"
    code, text = run_cli(
        "build", "--workflow", "all", "-n", "16", "--samples-per-shard", "4", "--image-size", "128",
        "--out", str(out), "--seed", "3", "--quiet",
    )  # fmt: skip
    assert code == 0, text
    return out


@pytest.fixture
def hf_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))


def _records(out: Path) -> list[dict]:
    recs = []
    for tar in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar) as t:
            recs += [json.load(t.extractfile(m)) for m in t.getmembers() if m.name.endswith(".json")]
    return recs


def _shape(v):
    """The JSON type tree of a value (what Arrow infers a column type from)."""
    if isinstance(v, dict):
        return {k: _shape(x) for k, x in sorted(v.items())}
    if isinstance(v, list):
        return ["empty"] if not v else [_shape(v[0])]
    return type(v).__name__


def test_records_have_one_shape_whatever_the_workflow(small_all):
    recs = _records(small_all)
    assert {r["workflow"] for r in recs} == {"param", "style", "auto"}
    shapes = {json.dumps(_shape(r), sort_keys=True) for r in recs}
    assert len(shapes) == 1, "records of different workflows have different field types"
    assert "NoneType" not in next(iter(shapes)) and "empty" not in next(iter(shapes))
    style = next(r for r in recs if r["workflow"] == "style")
    assert style["preset"]["id"] and style["preset"]["fine"] in style["preset"]["categories"].split("; ")
    param = next(r for r in recs if r["workflow"] == "param")
    assert param["preset"]["id"] == "" and param["expert_ref"]["id"] == ""


def test_load_webdataset_data_files_every_record(small_all, hf_offline):
    import datasets

    files = sorted(str(p) for p in (small_all / "shards").glob("*.tar"))
    n = json.loads((small_all / "manifest.json").read_text())["samples"]
    for order in (files, files[::-1]):  # whichever shard the types are inferred from
        ds = datasets.load_dataset("webdataset", data_files={"train": order}, split="train")
        assert len(ds) == n
        assert sorted({r["workflow"] for r in ds["json"]}) == ["auto", "param", "style"]


def test_load_dataset_dir_and_config(small_all, hf_offline):
    import datasets

    manifest = json.loads((small_all / "manifest.json").read_text())
    ds = datasets.load_dataset(str(small_all), split="train")
    assert len(ds) == manifest["samples"]
    style = datasets.load_dataset(str(small_all), "style", split="train")
    assert len(style) == manifest["per_workflow"]["style"]
    assert {r["workflow"] for r in style["json"]} == {"style"}


def test_card_front_matter_and_sections(small_all):
    text = (small_all / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    for k in ("license", "task_categories", "size_categories", "configs", "annotations_creators"):
        assert meta[k], k
    assert meta["source_datasets"] and meta["pretty_name"]
    assert meta["size_categories"] == ["n<1K"] and meta["license"] == "cc0-1.0"
    names = {c["config_name"]: c for c in meta["configs"]}
    assert set(names) == {"default", "param", "style", "auto"}
    assert names["style"]["data_files"] == [{"split": "train", "path": "shards/style-*.tar"}]
    for section in ("## Summary", "## Structure", "## How to load", "## Uses and limitations",
                    "## Licences", "## Citation"):  # fmt: skip
        assert section in text
    for reader in ("import webdataset", "load_dataset(", "ray.data.read_webdataset", "ShardStream"):
        assert reader in text


def test_card_shows_fingerprints_when_the_manifest_has_them():
    from aether_data.card import card_text, size_category

    manifest = {
        "samples": 1500,
        "seed": 0,
        "shards": [{"name": "param-000000", "path": "shards/param-000000.tar"}],
        "per_workflow": {"param": 1500},
        "fingerprints": {"code": "ab" * 32, "spec": "cd" * 32},
    }
    text = card_text(manifest, "run", {"CC0-1.0": 1000, "CC-BY-4.0": 500})
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["license"] == "other" and meta["size_categories"] == ["1K<n<10K"]
    assert "| code | `" + "ab" * 32 + "` |" in text and "| spec |" in text
    assert (
        "fingerprints" not in card_text({**manifest, "fingerprints": None}, "run").lower().split("## how")[0]
    )
    assert size_category(999) == "n<1K" and size_category(2_000_000) == "1M<n<10M"
