"""Parameters, protocols, seeding and specs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aether_data import params as P
from aether_data.config import SpecError, load_spec
from aether_data.sampling import (
    PROTOCOLS,
    load_operator_stats,
    protocol_groups,
    rng_for,
    sample_params,
    sample_seed,
)


def test_38_parameters_in_three_groups() -> None:
    assert len(P.PARAM_NAMES) == 38
    assert [len(P.GROUP_PARAMS[g]) for g in P.GROUPS] == [10, 4, 24]
    assert P.normalise("Exposure2012", 2.5) == 0.5 and P.normalise("Contrast2012", -50) == -0.5


def test_param_json_round_trip(tmp_path) -> None:
    """param.json is on the official ±100 scale (Exposure 20 per EV), all 38 keys like the official sample."""
    values = {"Exposure2012": 0.35, "Contrast2012": -20.0, "HueAdjustmentBlue": 15.0}
    path = tmp_path / "param.json"
    P.write_param_json(values, path)
    written = json.loads(path.read_text())
    assert list(written) == list(P.PARAM_NAMES)
    assert written["Exposure2012"] == {"value": 7} and written["Contrast2012"] == {"value": -20}
    assert written["HueAdjustmentBlue"] == {"value": 15} and written["Whites2012"] == {"value": 0}
    back = P.read_param_json(path)
    assert back == pytest.approx({n: values.get(n, 0.0) for n in P.PARAM_NAMES}, abs=1e-9)
    assert P.active(back).keys() == values.keys()
    P.write_param_json(values, path, include_zero=False)
    assert set(json.loads(path.read_text())) == set(values)


def test_official_sample_param_json_is_accepted() -> None:
    """data_samples/param.json of the official repository: Exposure 30 → +1.5 EV, Temperature -40, Saturation 30."""
    values = P.read_param_json(Path(__file__).parent / "data" / "veraretouch" / "param.json")
    assert P.active(values) == pytest.approx(
        {"Exposure2012": 1.5, "IncrementalTemperature": -40.0, "Saturation": 30.0}
    )
    assert P.normalise("Exposure2012", values["Exposure2012"]) == pytest.approx(0.3)


def test_param_json_legacy_slider_scale() -> None:
    assert P.parse_param_json({"Exposure2012": {"value": 1.5}}, scale="slider") == {"Exposure2012": 1.5}
    assert P.parse_param_json({"Exposure2012": {"value": 1.5}}) == pytest.approx({"Exposure2012": 0.075})
    with pytest.raises(ValueError, match=r"unknown param\.json scale"):
        P.parse_param_json({}, scale="ev")


@pytest.mark.parametrize(
    "obj, message",
    [
        ({"Exposure2012": {"value": 101}}, "outside the official range"),
        ({"Sharpness": {"value": 9}}, "unknown parameter"),
        ({"Contrast2012": {"value": "high"}}, "expected a number"),
        ([1, 2], "JSON object"),
    ],
)
def test_param_json_rejects_bad_values(obj, message) -> None:
    with pytest.raises(P.ParamError, match=message):
        P.parse_param_json(obj)


def test_param_json_rejects_nan(tmp_path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"Exposure2012": {"value": NaN}}')
    with pytest.raises(P.ParamError, match="not finite"):
        P.read_param_json(path)


def test_seven_protocols_and_their_groups() -> None:
    assert len(PROTOCOLS) == 7 and len(set(PROTOCOLS)) == 7
    assert protocol_groups("light+specificcolor") == ("light", "specificcolor")


def test_sampling_respects_protocol_and_is_seeded() -> None:
    stats = load_operator_stats()
    for i in range(300):
        protocol = PROTOCOLS[i % 7]
        got_protocol, values = sample_params(rng_for(sample_seed(3, i)), protocol, stats)
        assert got_protocol == protocol
        on = [g for g, m in zip(P.GROUPS, P.masks(values)) if m]
        assert "+".join(on) == protocol
        P.validate(values)
    a = sample_params(rng_for(sample_seed(3, 5)), None, stats)
    b = sample_params(rng_for(sample_seed(3, 5)), None, stats)
    c = sample_params(rng_for(sample_seed(3, 6)), None, stats)
    assert a == b and a != c


def test_degrade_signs_followed() -> None:
    stats = load_operator_stats()
    for i in range(200):
        _, values = sample_params(np.random.default_rng(i), "light+globalcolor", stats, degrade=True)
        for name, v in values.items():
            sign = stats[name].degrade_sign
            if sign:
                assert np.sign(v) == sign, (name, v)


def test_sample_seeds_are_spawn_children() -> None:
    seeds = [sample_seed(7, i) for i in range(1000)]
    assert len(set(seeds)) == 1000 and all(0 <= s < 2**63 for s in seeds)
    assert sample_seed(7, 0) != sample_seed(8, 0)


def test_spec_overrides_and_errors(tmp_path) -> None:
    spec = load_spec(None, "param", {"num_samples": 10, "image": {"size": 256}})
    assert spec.num_samples == 10 and spec.image.size == 256 and spec.image.quality == 95
    with pytest.raises(SpecError, match=r"samples_per_shard"):
        load_spec(None, "param", {"samples_per_shard": 0})
    bad = tmp_path / "bad.yaml"
    bad.write_text("workflow: param\nparam: {protocols: [light, sparkle]}\n")
    with pytest.raises(SpecError, match="sparkle"):
        load_spec(bad)


def test_pipeline_spec_schema_file_is_current() -> None:
    """manifests/pipeline-spec.schema.json is generated from the pydantic models; keep it in sync."""
    from aether_data.config import spec_json_schema
    from tests.conftest import REPO

    on_disk = json.loads((REPO / "manifests" / "pipeline-spec.schema.json").read_text())
    assert on_disk == spec_json_schema(), (
        "regenerate with: aether schema pipeline-spec > manifests/pipeline-spec.schema.json"
    )


def test_shipped_pipeline_specs_validate() -> None:
    from tests.conftest import REPO

    for path in sorted((REPO / "pipelines").glob("*.yaml")):
        load_spec(path)
