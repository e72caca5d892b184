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
    # the expected members are read straight from the stored library file (not through the index)
    with gzip.open(DEFAULT_LIBRARY_PATH, "rt", encoding="utf-8") as fh:
        raw = [json.loads(line) for line in fh if line.strip()]
    cinestill = [r["id"] for r in raw if r["fine"].lower() == "cinestill 800t"]
    assert len(cinestill) >= 10
    assert [q.id for q in lib.by_category("cinestill 800t")] == cinestill  # case-insensitive, in order
    assert [q.id for q in lib.by_category("Cinestill 800T")] == cinestill
    assert lib.by_category("no such category") == []
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


LINEAR_FADE_XMP = """<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
   crs:PresetType="Normal" crs:Version="14.0" crs:ProcessVersion="11.0"
   crs:ToneCurveName2012="Custom" crs:HasSettings="True">
   <crs:Name><rdf:Alt><rdf:li xml:lang="x-default">Linear Fade</rdf:li></rdf:Alt></crs:Name>
   <crs:ToneCurvePV2012><rdf:Seq><rdf:li>0, 48</rdf:li><rdf:li>255, 244</rdf:li></rdf:Seq></crs:ToneCurvePV2012>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def _parse_cube(path: Path) -> tuple[int, np.ndarray]:
    """An independent .cube reader (Adobe/Resolve spec: red varies fastest) → lut[r, g, b]."""
    size, rows = 0, []
    for line in path.read_text().splitlines():
        if line.startswith("LUT_3D_SIZE"):
            size = int(line.split()[1])
        elif line and (line[0].isdigit() or line[0] in "-."):
            rows.append([float(x) for x in line.split()])
    return size, np.array(rows).reshape(size, size, size, 3).transpose(2, 1, 0, 3)


def test_export_cube(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "linear_fade.xmp").write_text(LINEAR_FADE_XMP)
    out = tmp_path / "out"
    code, text = cli(
        "export", "--format", "cube", "--size", "9",
        "--id", "kodak-portra-warm-01",
        "--id", str(DATA / "xmp" / "teal_orange_colorgrade.xmp"),
        "--id", str(tmp_path / "in" / "linear_fade.xmp"),
        "-o", str(out),
    )  # fmt: skip
    assert code == 0, text
    files = sorted(p.name for p in out.glob("*.cube"))
    assert files == ["blockbuster-teal-orange.cube", "kodak-portra-warm-01.cube", "linear-fade.cube"]
    # hand-worked: a straight tone curve (0 → 48, 255 → 244) maps every channel v to (48 + 196 v) / 255
    size, fade = _parse_cube(out / "linear-fade.cube")
    v = np.linspace(0.0, 1.0, 9)
    r, g, b = np.meshgrid(v, v, v, indexing="ij")
    expected = (48 + 196 * np.stack([r, g, b], axis=-1)) / 255
    assert size == 9 and np.abs(fade - expected).max() < 1e-6
    # Portra: golden entries recorded from the shipped engine (7 decimals as written), read with the
    # independent parser and with read_cube (which must agree with it)
    size, portra = _parse_cube(out / "kodak-portra-warm-01.cube")
    golden = {
        (0, 0, 0): [0.1882353, 0.1882353, 0.1882353],  # black lifts to the curve's 48/255
        (8, 8, 8): [0.9569072, 0.9490210, 0.9227605],  # white: warm, below the curve's 244/255
        (4, 4, 4): [0.5270454, 0.5078192, 0.4965796],  # mid grey turns warm
        (8, 0, 0): [0.9478951, 0.2175122, 0.1905184],
        (0, 0, 8): [0.1940556, 0.1940556, 0.9568627],
        (0, 8, 0): [0.1882353, 0.8866154, 0.1882353],
    }
    for idx, rgb in golden.items():
        assert np.abs(portra[idx] - rgb).max() < 2e-6, (idx, portra[idx])
    assert read_cube(out / "kodak-portra-warm-01.cube").shape == (9, 9, 9, 3)
    assert np.abs(read_cube(out / "kodak-portra-warm-01.cube") - portra).max() < 1e-6
    assert "spatial effects" in text  # Portra's grain and vignette cannot go into a LUT, and it says so
    code, _ = cli("export", "--format", "png", "-o", str(tmp_path))
    assert code == 1
