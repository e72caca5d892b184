"""Taxonomy, the generated library, and the `presets` CLI (list / show / import / apply / export)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from aether_data.develop import read_cube
from aether_data.develop.preset_ops import bake_preset_lut
from aether_data.io.sources import bundled_photos
from aether_data.presets.cli import presets_app
from aether_data.presets.generate import generate_library
from aether_data.presets.library import DEFAULT_LIBRARY_PATH, Preset, load_library, read_library_file
from aether_data.presets.taxonomy import TaxonomyError, _parse, load_taxonomy

DATA = Path(__file__).resolve().parent / "data" / "presets"
runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    res = runner.invoke(presets_app, list(args), catch_exceptions=False)
    return res.exit_code, res.output


def test_taxonomy_counts_and_content() -> None:
    tax = load_taxonomy()
    assert len(tax.primary) == 11 and len(tax.fine) == 193
    names = [f.name.lower() for f in tax.fine]
    assert len(set(names)) == 193
    for f in tax.fine:
        assert len(f.description) > 20 and f.scenes and f.traits
        assert set(f.scenes) <= set(tax.scenes)
    assert tax.get_fine("cinestill 800t").primary == "Film"
    with pytest.raises(TaxonomyError):
        _parse(
            {
                "scenes": {"a": "x"},
                "primary": [
                    {
                        "name": "P",
                        "fine": [{"name": "F", "description": "d", "scenes": ["zzz"], "traits": ["warm"]}],
                    }
                ],
            },
            "t",
            False,
        )


def test_list_json_reports_5030_presets_11_primary_193_fine() -> None:
    code, out = cli("list", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["presets"] == 5030
    assert len(data["primary"]) == 11 and len(data["fine"]) == 193
    assert all(f["count"] > 0 for f in data["fine"])
    assert sum(p["count"] for p in data["primary"]) == sum(f["count"] for f in data["fine"]) == 5030
    assert {"name", "primary", "count"} <= set(data["fine"][0])


def test_library_is_compact_generated_and_reproducible() -> None:
    assert DEFAULT_LIBRARY_PATH.stat().st_size < 2_000_000
    stored = read_library_file(DEFAULT_LIBRARY_PATH)
    fresh = generate_library()
    assert [p.to_record() for p in fresh] == [p.to_record() for p in stored]
    assert len({p.id for p in stored}) == 5030
    with gzip.open(DEFAULT_LIBRARY_PATH, "rt", encoding="utf-8") as fh:
        first = json.loads(fh.readline())
    assert {"id", "name", "primary", "fine", "settings"} <= set(first)
    for p in stored[::250]:  # every stored preset validates cleanly and renders something
        assert not p.settings.issues and not p.settings.unsupported
        assert p.settings.core_params().keys() and len(p.settings) > 0


def test_library_lookups() -> None:
    lib = load_library()
    p = lib.get("kodak-portra-warm-01")
    assert p.fine == "Kodak Portra warm" and p.primary == "Film"
    assert all(q.fine == "Cinestill 800T" for q in lib.by_category("cinestill 800t"))
    assert len(lib.by_primary("Black & White")) > 400
    assert all(q.settings["ConvertToGrayscale"] for q in lib.by_primary("Black & White"))
    with pytest.raises(KeyError, match="no preset"):
        lib.get("nope")
    rec = p.to_record()
    assert Preset.from_record(rec).settings == p.settings


def test_show_and_apply(tmp_path: Path) -> None:
    code, out = cli("show", "cinestill-800t-03", "--json")
    assert code == 0
    data = json.loads(out)
    assert (
        data["fine"] == "Cinestill 800T"
        and data["settings"]
        and set(data["plans"]) == {"light", "globalcolor", "specificcolor"}
    )
    code, _ = cli("show", "does-not-exist")
    assert code == 1
    photo = str(bundled_photos()[1])
    for preset, name in (
        ("teal-and-orange-blockbuster-05", "a.jpg"),
        (str(DATA / "xmp" / "mono_elements.xmp"), "b.png"),
        (str(DATA / "lrtemplate" / "Vintage_Fade.lrtemplate"), "c.png"),
    ):
        code, out = cli("apply", preset, photo, "-o", str(tmp_path / name), "--max-side", "128")
        assert code == 0, out
        arr = np.asarray(Image.open(tmp_path / name))
        assert arr.shape[2] == 3 and max(arr.shape[:2]) == 128
    mono = np.asarray(Image.open(tmp_path / "b.png")).astype(int)
    assert np.abs(mono[..., 0] - mono[..., 1]).max() <= 12  # grayscale (+ a light split tone)
    code, out = cli("apply", str(DATA / "malformed" / "xxe.xmp"), photo, "-o", str(tmp_path / "x.jpg"))
    assert code == 1


def test_import_json(tmp_path: Path) -> None:
    code, out = cli("import", str(DATA), "--json", "-o", str(tmp_path / "pack.jsonl.gz"))
    assert code == 0
    data = json.loads(out)
    assert data["imported"] == 9 and len(data["failed"]) == 8
    assert all(set(f) == {"file", "reason"} for f in data["failed"])
    extra = load_library(extra=[tmp_path / "pack.jsonl.gz"])
    assert len(extra) == 5030 + 9
    code, out = cli("import", str(DATA / "malformed" / "xxe.xmp"))
    assert code == 1


def test_export_cube(tmp_path: Path) -> None:
    code, out = cli(
        "export",
        "--format",
        "cube",
        "--size",
        "9",
        "--id",
        "kodak-portra-warm-01",
        "--id",
        str(DATA / "xmp" / "teal_orange_colorgrade.xmp"),
        "-o",
        str(tmp_path),
    )
    assert code == 0, out
    files = sorted(p.name for p in tmp_path.glob("*.cube"))
    assert files == ["blockbuster-teal-orange.cube", "kodak-portra-warm-01.cube"]
    lut = read_cube(tmp_path / "kodak-portra-warm-01.cube")
    expected = bake_preset_lut(load_library().get("kodak-portra-warm-01").settings, 9)
    assert lut.shape == (9, 9, 9, 3) and np.abs(lut - expected).max() < 1e-6
    code, out = cli("export", "--format", "png", "-o", str(tmp_path))
    assert code == 1
