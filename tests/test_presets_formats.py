"""Preset file formats: XMP (attribute and element forms), .lrtemplate (Lua), malformed files, round trips."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from aether_data.develop.settings import (
    KEYS,
    NAMED_CURVES,
    PresetSettings,
    format_number,
    parse_curve,
    parse_number,
)
from aether_data.presets.errors import PresetFormatError
from aether_data.presets.importer import import_pack, read_preset_file
from aether_data.presets.library import load_library
from aether_data.presets.lrtemplate import LuaSyntaxError, parse_lua_table, read_lrtemplate
from aether_data.presets.xmp import parse_xmp_bytes, read_xmp, to_xmp

DATA = Path(__file__).resolve().parent / "data" / "presets"


# --------------------------------------------------------------------------------------------------
# model rules


def test_number_and_value_rules() -> None:
    assert parse_number("+5") == 5.0
    assert parse_number("-0.35") == -0.35
    assert parse_number(" 12 ") == 12.0
    assert math.isnan(parse_number("NaN"))
    with pytest.raises(ValueError):
        parse_number("five")
    s = PresetSettings.from_raw(
        {
            "Exposure2012": "+7",
            "Contrast2012": "nan",
            "Vibrance": "x",
            "ConvertToGrayscale": "True",
            "Foo": "1",
        }
    )
    assert s["Exposure2012"] == 5.0  # clamped
    assert "Contrast2012" not in s and "Vibrance" not in s  # dropped
    assert s["ConvertToGrayscale"] is True
    assert s.unsupported_keys == ["Foo"]
    assert any("clamped" in i for i in s.issues) and any("non-finite" in i for i in s.issues)
    assert s.value("ParametricShadowSplit") == 25.0  # neutral default
    assert format_number(KEYS["Contrast2012"], 5) == "+5"
    assert format_number(KEYS["Exposure2012"], 0.5) == "+0.50"
    assert format_number(KEYS["SplitToningShadowHue"], 205) == "205"


def test_curve_parsing() -> None:
    assert parse_curve(["0, 0", "128, 140", "255, 255"]) == [(0, 0), (128, 140), (255, 255)]
    assert parse_curve([0, 10, 255, 250]) == [(0, 10), (255, 250)]
    with pytest.raises(ValueError):
        parse_curve([0, 0, 0, 10])  # inputs not increasing
    with pytest.raises(ValueError):
        parse_curve([0, 10, 255])  # odd flat list


def test_legacy_process_2010_keys_are_mapped_or_reported() -> None:
    s = PresetSettings.from_raw(
        {"Exposure": "0.5", "Contrast": "45", "Brightness": "60", "ToneCurveName": "Medium Contrast"}
    )
    assert s["Exposure2012"] == 0.5
    assert s["Contrast2012"] == 20.0  # PV2010 default 25 → 0
    assert s["ToneCurveName2012"] == "Medium Contrast"
    assert "Brightness" in s.unsupported_keys
    both = PresetSettings.from_raw({"Exposure": "0.5", "Exposure2012": "1.0"})
    assert both["Exposure2012"] == 1.0 and "Exposure" in both.unsupported_keys


# --------------------------------------------------------------------------------------------------
# XMP


def test_xmp_attribute_form_lightroom_classic_export() -> None:
    s, meta = read_xmp(DATA / "xmp" / "warm_film_attributes.xmp")
    assert meta["Name"] == "Warm Film 01"
    assert meta["Group"] == "Film Portra Pack"
    assert meta["UUID"] == "5A1B0E1F7C2D4B35A9E2B1C0D3E4F506"
    assert s["Exposure2012"] == 0.25 and s["Contrast2012"] == -15 and s["IncrementalTemperature"] == 18
    assert s["ConvertToGrayscale"] is False
    assert s["ToneCurvePV2012"] == [(0, 28), (58, 64), (128, 131), (196, 198), (255, 244)]
    assert s["ToneCurvePV2012Blue"] == [(0, 14), (128, 126), (255, 240)]
    assert s["ColorGradeBlending"] == 60 and s["SplitToningBalance"] == 10
    assert s["PostCropVignetteStyle"] == 1 and isinstance(s["PostCropVignetteStyle"], int)
    # the nested crs:Look profile, lens and noise keys are reported, never silently ignored
    for key in ("Look", "LensProfileEnable", "LuminanceSmoothing", "VignetteAmount"):
        assert key in s.unsupported_keys
    assert isinstance(s.unsupported["Look"], dict) and s.unsupported["Look"]["Name"] == "Adobe Color"


def test_xmp_element_form_and_alt_languages() -> None:
    s, meta = read_xmp(DATA / "xmp" / "mono_elements.xmp")
    assert meta["Name"] == "Silver Street B&W"  # x-default among several languages
    assert s["ConvertToGrayscale"] is True
    assert s["GrayMixerBlue"] == -38 and s["GrayMixerRed"] == 25
    assert s["ToneCurveName2012"] == "Strong Contrast"
    assert s["ToneCurvePV2012"] == NAMED_CURVES["Strong Contrast"]
    assert "AutoGrayscaleMix" in s.meta  # descriptive, not rendered
    assert {"CameraProfile", "HasCrop"} <= set(s.unsupported_keys)


def test_xmp_mixed_forms_and_masks_reported() -> None:
    s, _ = read_xmp(DATA / "xmp" / "bright_airy_mixed.xmp")
    assert s["Saturation"] == -10 and s["Exposure2012"] == 0.7  # element and attribute forms together
    assert {"CropTop", "HasCrop"} <= set(s.unsupported_keys)
    t, _ = read_xmp(DATA / "xmp" / "teal_orange_colorgrade.xmp")
    # its one mask-group correction has no mask component (no geometry to render): reported as such
    assert t.unsupported_keys.count("MaskGroupBasedCorrections[0]: no mask") == 1
    assert t.corrections[0].sliders == {"Exposure": -1.4}
    assert t["ColorGradeGlobalSat"] == 5 and t["ColorGradeMidtoneHue"] == 200


@pytest.mark.parametrize("name", sorted(p.name for p in (DATA / "xmp").glob("*.xmp")))
def test_xmp_round_trip_keeps_every_supported_value(name: str) -> None:
    s, meta = read_xmp(DATA / "xmp" / name)
    text = to_xmp(s)
    s2 = PresetSettings.from_raw(parse_xmp_bytes(text.encode("utf-8")))
    assert dict(s2) == dict(s)
    for key in ("Name", "Group", "UUID"):
        if meta.get(key):
            assert s2.meta[key] == meta[key]
    scalar_unsupported = {k for k, v in s.unsupported.items() if isinstance(v, str)}
    assert scalar_unsupported <= set(s2.unsupported)
    # and the second trip is a fixed point
    assert to_xmp(s2) == text


def test_xmp_round_trip_of_library_presets() -> None:
    lib = load_library()
    for p in lib.presets[::97]:
        text = to_xmp(p.settings, name=p.name, group=p.primary)
        if p.settings.get("Contrast2012", 0) > 0:  # signed sliders are written with a "+"
            assert f'crs:Contrast2012="+{int(p.settings["Contrast2012"])}"' in text
        back = PresetSettings.from_raw(parse_xmp_bytes(text.encode()))
        assert dict(back) == dict(p.settings), p.id
        assert back.meta["Name"] == p.name


# --------------------------------------------------------------------------------------------------
# .lrtemplate


def test_lua_parser_subset() -> None:
    t = parse_lua_table(
        's = { a = 1, b = -2.5e1, c = 0x1F, d = "x\\"y\\n\\65", e = [[long\nstring]], f = { 1, 2, 3 },'
        ' ["g"] = true, [3] = false, h = nil; i = { j = { k = "deep" } }, -- comment\n --[[ block ]] }'
    )
    assert t["a"] == 1 and t["b"] == -25 and t["c"] == 31
    assert t["d"] == 'x"y\nA' and t["e"] == "long\nstring"
    assert t["f"] == [1, 2, 3] and t["g"] is True and t[3] is False and t["h"] is None
    assert t["i"]["j"]["k"] == "deep"
    for bad in (
        "s = { a = 1",
        's = { a = "x }',
        "s = { a = os.exit() }",
        "s = { a = 1 } extra",
        "s = { a = 1 b = 2 }",
    ):
        with pytest.raises(LuaSyntaxError):
            parse_lua_table(bad)


def test_lrtemplate_develop_preset() -> None:
    s, meta = read_lrtemplate(DATA / "lrtemplate" / "Vintage_Fade.lrtemplate")
    assert meta["Name"] == "Vintage Fade"
    assert meta["UUID"] == "7E6D5C4B-3A29-4180-9F8E-7D6C5B4A3928"
    assert s["Exposure2012"] == 0.15 and s["Blacks2012"] == 18
    assert s["ToneCurvePV2012"] == [(0, 32), (60, 72), (128, 130), (200, 196), (255, 238)]
    assert s["ToneCurvePV2012Blue"] == [(0, 22), (255, 236)]
    assert s["WhiteBalance"] == "As Shot"
    assert {"EnableCalibration", "HasCrop", "LensProfileEnable"} <= set(s.unsupported_keys)


def test_lrtemplate_legacy_and_escapes() -> None:
    s, meta = read_lrtemplate(DATA / "lrtemplate" / "Legacy_PV2010_Punch.lrtemplate")
    assert meta["Name"] == "Legacy Punch (PV2010)"  # "$$$/Key=Default" localisation stripped
    assert s["Clarity2012"] == 25 and s["Contrast2012"] == 20 and s["Exposure2012"] == 0.35
    assert s["LuminanceAdjustmentBlue"] == -12  # ["key"] = value form
    assert "Brightness" in s.unsupported_keys
    assert meta["Description"] == "single-quoted 'escaped' text AB with a tab\tand \"quotes\""


# --------------------------------------------------------------------------------------------------
# malformed files and the corpus import


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("broken_xml.xmp", "malformed XML"),
        ("xxe.xmp", "XXE"),
        ("billion_laughs.xmp", "billion laughs"),
        ("no_crs_settings.xmp", "no camera-raw settings"),
        ("export_settings.lrtemplate", "not a develop preset"),
        ("truncated.lrtemplate", "unterminated table"),
        ("bad_escape.lrtemplate", "invalid escape"),
        ("readme.txt", "not a preset file"),
    ],
)
def test_malformed_files_raise_with_reason(name: str, needle: str) -> None:
    with pytest.raises(PresetFormatError) as info:
        read_preset_file(DATA / "malformed" / name)
    assert needle in info.value.reason
    assert info.value.file.endswith(name)


def test_xxe_payload_is_never_read() -> None:
    with pytest.raises(PresetFormatError) as info:
        read_xmp(DATA / "malformed" / "xxe.xmp")
    assert "root:" not in str(info.value)


def test_nan_and_out_of_range_import_with_notes() -> None:
    s, _ = read_xmp(DATA / "malformed" / "nan_values.xmp")
    assert "Exposure2012" not in s and "Saturation" not in s and s["Contrast2012"] == 25
    r, _ = read_xmp(DATA / "malformed" / "out_of_range.xmp")
    assert r["Exposure2012"] == 5.0 and r["Contrast2012"] == 100 and r["GrainAmount"] == 0
    assert "ToneCurvePV2012" not in r and any("ToneCurvePV2012" in i for i in r.issues)


def test_corpus_imports_every_file_or_lists_reason() -> None:
    report = import_pack(DATA)
    files = sorted(str(p.relative_to(DATA)) for p in DATA.rglob("*") if p.is_file())
    imported = sorted(n["file"] for n in report.notes)
    failed = sorted(f["file"] for f in report.failed)
    assert sorted(imported + failed) == files
    assert report.imported == len(imported) == 9
    assert all(f["reason"] for f in report.failed)
    assert len({p.id for p in report.presets}) == report.imported
    cats = {p.name: (p.primary, p.fine) for p in report.presets}
    assert cats["Silver Street B&W"][0] == "Black & White"
    assert cats["Blockbuster Teal Orange"] == ("Cinematic", "Teal and orange blockbuster")
    assert cats["Warm Film 01"][0] == "Film"
