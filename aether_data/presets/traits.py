"""Style traits: the building blocks of the generated library's category prototypes.

Each fine category in presets/taxonomy.yaml lists traits ("warm", "faded-blacks", "teal-shadows",
...). A trait is a partial set of develop settings; a category prototype is the composition of its
traits (``compose``): numeric sliders add up, hues / curves / names / style enums are set by the
last trait that defines them, booleans are OR-ed. Values are our own approximations of the looks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aether_data.develop.settings import KEYS

_FADE = [(0, 38), (64, 78), (128, 132), (192, 193), (255, 246)]
_MATTE = [(0, 46), (48, 62), (128, 128), (208, 203), (255, 236)]
_CRUSH = [(0, 0), (40, 18), (128, 126), (255, 255)]
_LIFT_LOW = [(0, 12), (64, 70), (255, 255)]

TRAITS: dict[str, dict[str, Any]] = {
    # --- light ---------------------------------------------------------------------------------
    "bright": {"Exposure2012": 0.35, "Shadows2012": 20, "Blacks2012": 8, "Highlights2012": -10},
    "very-bright": {"Exposure2012": 0.7, "Highlights2012": -30, "Shadows2012": 30, "Whites2012": 10},
    "dark": {"Exposure2012": -0.35, "Highlights2012": -15, "Blacks2012": -10, "ParametricLights": -10},
    "low-key": {"Exposure2012": -0.6, "Shadows2012": -20, "Blacks2012": -25, "Contrast2012": 15},
    "high-contrast": {"Contrast2012": 35, "Whites2012": 15, "Blacks2012": -15},
    "soft-contrast": {"Contrast2012": -25, "Highlights2012": -20, "Shadows2012": 15},
    "faded-blacks": {"ToneCurvePV2012": _FADE, "ToneCurveName2012": "Custom"},
    "matte": {"ToneCurvePV2012": _MATTE, "ToneCurveName2012": "Custom", "Contrast2012": -10},
    "crushed-blacks": {"Blacks2012": -30, "ToneCurvePV2012": _CRUSH, "ToneCurveName2012": "Custom"},
    "s-curve": {"ToneCurveName2012": "Strong Contrast"},
    "medium-curve": {"ToneCurveName2012": "Medium Contrast"},
    "lifted-shadows": {"Shadows2012": 35, "ParametricShadows": 15, "ParametricDarks": 10},
    "hdr": {"Highlights2012": -70, "Shadows2012": 60, "Clarity2012": 35, "Whites2012": 15, "Blacks2012": -15},
    "glow": {"Clarity2012": -30, "Highlights2012": -10, "Dehaze": -8, "ParametricLights": 10},
    "crisp": {"Clarity2012": 22, "Texture": 15, "Sharpness": 45, "SharpenRadius": 1.0, "SharpenDetail": 30},
    "haze": {"Dehaze": -22, "Contrast2012": -8},
    "dehaze": {"Dehaze": 25, "Clarity2012": 8},
    # --- global colour -------------------------------------------------------------------------
    "warm": {"IncrementalTemperature": 22, "IncrementalTint": 3},
    "very-warm": {"IncrementalTemperature": 42, "IncrementalTint": 5},
    "cool": {"IncrementalTemperature": -22},
    "very-cool": {"IncrementalTemperature": -42, "IncrementalTint": -4},
    "magenta": {"IncrementalTint": 14, "ColorGradeHighlightHue": 320, "ColorGradeHighlightSat": 10},
    "green-tint": {"IncrementalTint": -14, "ShadowTint": -10},
    "vivid": {"Vibrance": 30, "Saturation": 10},
    "vivid-light": {"Vibrance": 12},
    "muted": {"Vibrance": -15, "Saturation": -18},
    "desaturated": {"Saturation": -45, "Vibrance": -10},
    "pastel": {
        "Saturation": -22,
        "Vibrance": 10,
        "Exposure2012": 0.2,
        "Contrast2012": -20,
        "ToneCurvePV2012": _LIFT_LOW,
        "ToneCurveName2012": "Custom",
    },
    "teal-orange": {
        "SplitToningShadowHue": 190,
        "SplitToningShadowSaturation": 30,
        "SplitToningHighlightHue": 35,
        "SplitToningHighlightSaturation": 28,
        "SplitToningBalance": 10,
        "SaturationAdjustmentOrange": 10,
        "HueAdjustmentAqua": -10,
        "SaturationAdjustmentBlue": 10,
        "HueAdjustmentGreen": 30,
        "SaturationAdjustmentGreen": -30,
    },
    "teal-shadows": {"SplitToningShadowHue": 185, "SplitToningShadowSaturation": 25},
    "blue-shadows": {"SplitToningShadowHue": 220, "SplitToningShadowSaturation": 22},
    "green-shadows": {"SplitToningShadowHue": 140, "SplitToningShadowSaturation": 16},
    "warm-highlights": {"SplitToningHighlightHue": 40, "SplitToningHighlightSaturation": 25},
    "pink-highlights": {"SplitToningHighlightHue": 340, "SplitToningHighlightSaturation": 18},
    "golden": {
        "IncrementalTemperature": 25,
        "SplitToningHighlightHue": 45,
        "SplitToningHighlightSaturation": 30,
        "SaturationAdjustmentOrange": 12,
        "HueAdjustmentYellow": -10,
    },
    "midtone-teal": {"ColorGradeMidtoneHue": 190, "ColorGradeMidtoneSat": 14},
    "cross-process": {
        "ToneCurvePV2012Red": [(0, 0), (64, 50), (192, 212), (255, 255)],
        "ToneCurvePV2012Green": [(0, 0), (64, 72), (255, 248)],
        "ToneCurvePV2012Blue": [(0, 34), (255, 222)],
    },
    "red-shadows-curve": {"ToneCurvePV2012Red": [(0, 22), (128, 132), (255, 255)]},
    "blue-lift-curve": {"ToneCurvePV2012Blue": [(0, 30), (128, 126), (255, 232)]},
    "green-curve": {"ToneCurvePV2012Green": [(0, 16), (128, 132), (255, 246)]},
    "calib-vivid": {"BlueSaturation": 40, "RedSaturation": 15, "BlueHue": -10, "RedHue": 8},
    # --- black & white -------------------------------------------------------------------------
    "bw": {"ConvertToGrayscale": True, "GrayMixerRed": -5, "GrayMixerOrange": 5, "GrayMixerBlue": -10},
    "bw-red-filter": {
        "GrayMixerRed": 30,
        "GrayMixerOrange": 25,
        "GrayMixerYellow": 10,
        "GrayMixerBlue": -40,
        "GrayMixerAqua": -20,
    },
    "bw-green-filter": {"GrayMixerGreen": 30, "GrayMixerYellow": 20, "GrayMixerRed": -15},
    "bw-blue-filter": {"GrayMixerBlue": 30, "GrayMixerAqua": 15, "GrayMixerRed": -20, "GrayMixerOrange": -15},
    "bw-infrared": {"GrayMixerGreen": 80, "GrayMixerYellow": 60, "GrayMixerBlue": -60, "GrayMixerAqua": -30},
    "sepia": {
        "SplitToningShadowHue": 35,
        "SplitToningShadowSaturation": 35,
        "SplitToningHighlightHue": 45,
        "SplitToningHighlightSaturation": 20,
    },
    "selenium": {
        "SplitToningShadowHue": 280,
        "SplitToningShadowSaturation": 18,
        "SplitToningHighlightHue": 40,
        "SplitToningHighlightSaturation": 8,
    },
    "cyanotype": {
        "SplitToningShadowHue": 210,
        "SplitToningShadowSaturation": 45,
        "SplitToningHighlightHue": 200,
        "SplitToningHighlightSaturation": 25,
    },
    # --- specific colour -----------------------------------------------------------------------
    "warm-skin": {
        "SaturationAdjustmentOrange": 8,
        "LuminanceAdjustmentOrange": 10,
        "HueAdjustmentRed": 5,
        "HueAdjustmentOrange": -4,
    },
    "soft-skin": {
        "SaturationAdjustmentOrange": -10,
        "LuminanceAdjustmentOrange": 15,
        "SaturationAdjustmentRed": -10,
        "Texture": -15,
    },
    "rosy-skin": {
        "SaturationAdjustmentRed": 15,
        "LuminanceAdjustmentRed": 5,
        "HueAdjustmentOrange": -8,
        "SaturationAdjustmentMagenta": 8,
    },
    "desat-greens": {
        "SaturationAdjustmentGreen": -40,
        "SaturationAdjustmentAqua": -20,
        "SaturationAdjustmentYellow": -15,
    },
    "olive-greens": {
        "HueAdjustmentGreen": -30,
        "HueAdjustmentYellow": -15,
        "SaturationAdjustmentGreen": -20,
        "LuminanceAdjustmentGreen": -10,
    },
    "emerald-greens": {
        "HueAdjustmentGreen": 20,
        "SaturationAdjustmentGreen": 20,
        "LuminanceAdjustmentGreen": -15,
    },
    "autumn-foliage": {
        "HueAdjustmentYellow": -25,
        "HueAdjustmentGreen": -40,
        "SaturationAdjustmentOrange": 25,
        "SaturationAdjustmentYellow": 20,
        "SaturationAdjustmentGreen": -20,
        "IncrementalTemperature": 6,
    },
    "deep-blues": {
        "SaturationAdjustmentBlue": 25,
        "LuminanceAdjustmentBlue": -25,
        "SaturationAdjustmentAqua": 10,
    },
    "pale-blues": {"SaturationAdjustmentBlue": -25, "LuminanceAdjustmentBlue": 20, "HueAdjustmentAqua": 10},
    "teal-blues": {"HueAdjustmentBlue": -30, "HueAdjustmentAqua": -15, "SaturationAdjustmentAqua": 15},
    "vivid-reds": {"SaturationAdjustmentRed": 20, "SaturationAdjustmentMagenta": 10},
    "muted-reds": {"SaturationAdjustmentRed": -20, "SaturationAdjustmentMagenta": -10},
    "golden-yellows": {
        "HueAdjustmentYellow": -15,
        "SaturationAdjustmentYellow": 15,
        "SaturationAdjustmentOrange": 10,
    },
    # --- effects -------------------------------------------------------------------------------
    "grain-fine": {"GrainAmount": 15, "GrainSize": 15, "GrainFrequency": 60},
    "grain-medium": {"GrainAmount": 28, "GrainSize": 25, "GrainFrequency": 50},
    "grain-heavy": {"GrainAmount": 45, "GrainSize": 40, "GrainFrequency": 45},
    "vignette-light": {
        "PostCropVignetteAmount": -15,
        "PostCropVignetteMidpoint": 50,
        "PostCropVignetteFeather": 60,
    },
    "vignette-strong": {
        "PostCropVignetteAmount": -35,
        "PostCropVignetteMidpoint": 30,
        "PostCropVignetteFeather": 70,
        "PostCropVignetteStyle": 1,
    },
    "vignette-white": {
        "PostCropVignetteAmount": 20,
        "PostCropVignetteMidpoint": 40,
        "PostCropVignetteFeather": 80,
        "PostCropVignetteStyle": 3,
    },
}

ACCENTS: tuple[str, ...] = (
    "grain-fine",
    "vignette-light",
    "crisp",
    "lifted-shadows",
    "vivid-light",
    "warm",
    "cool",
    "glow",
)
"""Secondary traits a generated variant may pick up (seeded), for variety within a category."""

_LAST_WINS_KINDS = ("str", "curve", "int")


def _is_hue(key: str) -> bool:
    return key.endswith("Hue") and (key.startswith("SplitToning") or key.startswith("ColorGrade"))


def compose(traits: Iterable[str]) -> dict[str, Any]:
    """Combine traits into one settings dict (numbers add; hues, curves, names, enums: last wins)."""
    out: dict[str, Any] = {}
    for name in traits:
        if name not in TRAITS:
            raise KeyError(f"unknown style trait {name!r}")
        for key, value in TRAITS[name].items():
            spec = KEYS[key]
            if spec.kind == "bool":
                out[key] = bool(out.get(key, False)) or bool(value)
            elif (
                spec.kind in _LAST_WINS_KINDS
                or _is_hue(key)
                or (key.startswith("PostCropVignette") and key != "PostCropVignetteAmount")
            ):
                out[key] = value
            elif key in ("SharpenRadius", "SharpenDetail", "GrainSize", "GrainFrequency"):
                out[key] = value
            else:
                out[key] = out.get(key, 0.0) + value
    if "ToneCurvePV2012" in out:
        out["ToneCurveName2012"] = "Custom"
    return out


__all__ = ["ACCENTS", "TRAITS", "compose"]
