"""Scale: a streamed plan with the same bytes, shard rows computed on workers, flat driver memory,
stage timings, and the `aether bench` machinery on a tiny configuration."""

from __future__ import annotations

import io
import json
import tarfile
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aether_data.bench import (
    BenchConfig,
    cost_model,
    make_corpus,
    render_markdown,
    run_bench,
    transcode_shard,
)
from aether_data.build import plan as plan_module
from aether_data.build.clock import STAGES
from aether_data.build.errors import BuildError
from aether_data.build.plan import (
    PLAN_SCHEMA,
    Planner,
    iter_plan,
    iter_shard_spans,
    resolve_sources,
    write_plan,
)
from aether_data.build.shard import ShardContext, ShardTask
from aether_data.config import load_spec


def _reference_plan_bytes(rows: list, group: int) -> bytes:
    """plan.parquet as the first version wrote it: the whole plan in one table."""
    cols = {name: [getattr(r, name) for r in rows] for name in PLAN_SCHEMA.names}
    sink = io.BytesIO()
    pq.write_table(
        pa.Table.from_pydict(cols, schema=PLAN_SCHEMA),
        sink,
        compression="zstd",
        row_group_size=max(1, min(len(rows), group)),
    )
    return sink.getvalue()


def test_streamed_plan_has_the_same_bytes(tmp_path: Path) -> None:
    spec = load_spec(None, "all", {"num_samples": 101, "samples_per_shard": 7, "seed": 9})
    sources = resolve_sources(spec)
    write_plan(tmp_path, spec, sources)
    assert (tmp_path / "plan.parquet").read_bytes() == _reference_plan_bytes(
        list(iter_plan(spec, sources)), 1 << 20
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_streamed_plan_bytes_across_row_groups_and_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the real sizes (1M-row groups, 64k-row batches) would need millions of rows; shrink both
    monkeypatch.setattr(plan_module, "PLAN_ROW_GROUP", 1000)
    monkeypatch.setattr(plan_module, "_PLAN_BATCH", 96)
    spec = load_spec(None, "param", {"num_samples": 2500, "samples_per_shard": 64, "seed": 1})
    sources = resolve_sources(spec)
    write_plan(tmp_path, spec, sources)
    data = (tmp_path / "plan.parquet").read_bytes()
    assert data == _reference_plan_bytes(list(iter_plan(spec, sources)), 1000)
    assert pq.ParquetFile(io.BytesIO(data)).metadata.num_row_groups == 3


def test_write_plan_refuses_a_different_plan(tmp_path: Path) -> None:
    spec = load_spec(None, "param", {"num_samples": 10, "seed": 1})
    sources = resolve_sources(spec)
    assert write_plan(tmp_path, spec, sources) == 10
    assert write_plan(tmp_path, spec, sources) == 10  # same plan: resume
    other = load_spec(None, "param", {"num_samples": 10, "seed": 2})
    with pytest.raises(BuildError, match="different plan"):
        write_plan(tmp_path, other, sources)


def test_spans_and_worker_rows_equal_the_materialised_plan() -> None:
    spec = load_spec(None, "all", {"num_samples": 50, "samples_per_shard": 6, "seed": 3})
    sources = resolve_sources(spec)
    rows = list(iter_plan(spec, sources))
    by_shard: dict[str, list] = {}
    for r in rows:
        by_shard.setdefault(r.shard, []).append(r)
    spans = list(iter_shard_spans(spec))
    assert [s.name for s in spans] == list(by_shard)
    # a worker gets the source list as a pyarrow array from the object store
    planner = Planner(spec, pa.array(sources, type=pa.large_string()))
    for span in spans:
        assert span.count == len(by_shard[span.name])
        assert planner.rows(span) == by_shard[span.name]


def test_driver_planning_memory_does_not_grow_with_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python-heap peak of planning 5k vs 50k samples (plan file + shard spans) stays flat."""
    monkeypatch.setattr(plan_module, "PLAN_ROW_GROUP", 2048)
    monkeypatch.setattr(plan_module, "_PLAN_BATCH", 512)
    peaks = {}
    for n in (100, 5_000, 50_000):  # the first run pays one-time allocations (imports, caches)
        spec = load_spec(None, "param", {"num_samples": n, "samples_per_shard": 256, "seed": 1})
        sources = resolve_sources(spec)
        out = tmp_path / str(n)
        out.mkdir()
        tracemalloc.start()
        write_plan(out, spec, sources)
        for _ in iter_shard_spans(spec):
            pass
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # a whole-dataset list of PlanRows would cost ~0.5 KB per sample: +20 MB at 50k
    assert peaks[50_000] < 1.5 * peaks[5_000] + (1 << 20), peaks


def test_shard_result_carries_stage_times(tmp_path: Path) -> None:
    spec = load_spec(None, "param", {"num_samples": 4, "samples_per_shard": 4, "image": {"size": 64}})
    ctx = ShardContext(spec, tmp_path)
    span = next(iter_shard_spans(spec))
    res = ctx.build_shard(ShardTask(span.name, "param", Planner(spec, resolve_sources(spec)).rows(span)))
    stages = json.loads(res["stages"])
    assert list(stages) == list(STAGES)
    assert all(v >= 0 for v in stages.values()) and stages["decode"] > 0 and stages["write"] > 0
    assert sum(stages.values()) <= res["t_end"] - res["t_start"] + 1e-3
    assert res["node"]


# --------------------------------------------------------------------------------------------------
# bench machinery


def test_corpus_images_are_distinct_and_sized(tmp_path: Path) -> None:
    from PIL import Image

    paths = make_corpus(tmp_path, 8, megapixels=0.5)
    assert len({p.read_bytes() for p in paths}) == 8
    for p in paths:
        with Image.open(p) as im:
            assert 0.4e6 < im.size[0] * im.size[1] < 0.6e6
    assert [p.read_bytes() for p in make_corpus(tmp_path / "again", 8, megapixels=0.5)] == [
        p.read_bytes() for p in paths
    ]


def test_transcode_baseline_writes_two_encodes_per_image(tmp_path: Path) -> None:
    paths = make_corpus(tmp_path / "c", 3, megapixels=0.3)
    n = transcode_shard([str(p) for p in paths], tmp_path / "t.tar", size=128, min_short=128)
    assert n == 3
    with tarfile.open(tmp_path / "t.tar") as tf:
        names = tf.getnames()
    assert len(names) == 6 and all(n.endswith(("input.jpg", "target.jpg")) for n in names)


def test_cost_model_arithmetic() -> None:
    tp = {"param": {"cpu_s_per_sample": 0.036}, "style": {"error": "x"}}
    cm = cost_model(tp, efficiency=0.9, cores=32)
    assert cm["param"]["cpu_hours_1m"] == 10.0  # 0.036 s x 1e6 / 3600
    assert cm["param"]["nodes_for_24h"] == 1  # 10 h / (24 h x 32 x 0.9)
    assert "style" not in cm
    assert cost_model({"a": {"cpu_s_per_sample": 2.0}}, 1.0, 32)["a"]["nodes_for_24h"] == 1 + int(
        2e6 / 3600 // (24 * 32)
    )


def test_bench_run_tiny(tmp_path: Path) -> None:
    """The whole bench flow on 6 samples (no Ray phases): JSON keys, ratios, markdown."""
    cfg = BenchConfig(
        samples=6, samples_per_shard=3, image_size=64, megapixels=0.2, workflows=("param", "nope"),
        scaling=False, memory=False, workdir=str(tmp_path),
    )  # fmt: skip
    result = run_bench(cfg, log=lambda _: None)
    param = result["workflows"]["param"]
    assert param["samples"] == 6 and param["samples_per_s"] > 0 and param["ratio_to_transcode"] > 0
    assert set(param["stage_s_per_sample"]) == set(STAGES)
    assert "error" in result["workflows"]["nope"]
    md = render_markdown(result)
    assert "| param |" in md and "ratio to transcode" in md and "CPU-hours" in md
    json.dumps(result)


def test_bench_command_writes_its_table_next_to_its_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`aether bench --json X.json` writes X.md beside it and nothing into the working directory
    (its old default, benchmarks/results.md under the cwd, overwrote the gated run's table with
    a gates-off run's)."""
    from aether_data.bench import bench_command

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = tmp_path / "runs" / "no-gates.json"
    out.parent.mkdir()
    code = bench_command(
        json_path=out, samples=4, image_size=64, workflows="param", skip_scaling=True, skip_memory=True,
        workdir=str(tmp_path / "work"), log=lambda _: None, gates=False,
    )  # fmt: skip
    assert code == 0 and json.loads(out.read_text())["workflows"]["param"]["samples"] == 4
    assert "| param |" in out.with_suffix(".md").read_text()
    assert list(cwd.iterdir()) == []
