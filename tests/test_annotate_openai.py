"""openai annotator against a real HTTP server on 127.0.0.1 (tests/annotate_stub_server.py).

The stub returns valid, malformed, slow, 500 and garbage answers depending on a MODE= marker in the
request: no sample may be lost, every fallback must be counted with its reason, retries must really
be sent, concurrency must be real, the cache must make a second run free, and the API key must
never reach any output.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
from annotate_stub_server import StubServer
from pydantic import ValidationError

from aether_data.annotate import (
    Annotation,
    AnnotationRequest,
    CompletionFormatError,
    TemplateAnnotator,
    TemplateBackend,
    annotator_manifest,
    make_annotator,
    parse_completion,
)
from aether_data.annotate.openai_backend import API_KEY_ENV, OpenAIAnnotator
from aether_data.annotate.prompt import build_vlm_prompt
from aether_data.annotate.validate import parse_answer, parse_variants
from aether_data.config import AnnotatorSpec

PARAMS = {"Exposure2012": 0.5, "IncrementalTemperature": -20.0, "SaturationAdjustmentBlue": 30.0}
PRESET = {
    "id": "p7",
    "name": "Moody Lake",
    "primary": "cinematic",
    "fine": "moody",
    "summary": "darker, cooler",
}


@pytest.fixture
def server() -> Iterator[StubServer]:
    with StubServer(latency=0.0, slow_s=1.5) as s:
        yield s


def _spec(server: StubServer, tmp_path: Path, **kw: object) -> AnnotatorSpec:
    base = {
        "backend": "openai",
        "base_url": server.base_url,
        "timeout_s": 0.4,
        "max_retries": 2,
        "retry_backoff_s": 0.01,
        "cache_dir": str(tmp_path / "cache"),
    }
    return AnnotatorSpec(**{**base, **kw})


def _request(i: int, mode: str = "ok", workflow: str = "param") -> AnnotationRequest:
    return AnnotationRequest(
        workflow=workflow,
        params=PARAMS,
        masks=[1, 1, 1],
        seed=i,
        preset=PRESET if workflow == "style" else None,
        image_stats={"mean_luminance": 0.35, "contrast": 0.18},
        category_description=f"lakeside portrait MODE={mode}",
    )


def _image(i: int) -> np.ndarray:
    return np.random.default_rng(i).random((40, 56, 3)).astype(np.float32)


def _run(ann: OpenAIAnnotator, cases: list[tuple[str, str]]) -> list[Annotation]:
    futures: list[Future[Annotation]] = [
        ann.submit(_request(i, mode, wf), _image(i), key=f"sample-{i:04d}")
        for i, (wf, mode) in enumerate(cases)
    ]
    ann.flush()
    return [f.result(timeout=30) for f in futures]


def test_mixed_answers_no_sample_lost_every_fallback_counted(server: StubServer, tmp_path: Path) -> None:
    cases = [
        ("param", "ok"),
        ("style", "ok"),
        ("auto", "ok"),
        ("param", "malformed"),
        ("auto", "malformed"),
        ("style", "slow"),
        ("param", "500"),
        ("auto", "500-once"),
        ("param", "malformed-once"),
        ("style", "garbage"),
        ("param", "fewvariants"),
    ]
    ann = make_annotator(_spec(server, tmp_path))
    assert isinstance(ann, OpenAIAnnotator)
    try:
        results = _run(ann, cases)
        stats = ann.stats()
    finally:
        ann.close()
    assert len(results) == len(cases)
    by_mode = {f"{wf}/{mode}": r.annotator for (wf, mode), r in zip(cases, results)}
    expected = {
        "param/ok": ("openai", 1, None),
        "style/ok": ("openai", 1, None),
        "auto/ok": ("openai", 1, None),
        "param/malformed": ("template-fallback", 3, "format:order"),
        "auto/malformed": ("template-fallback", 3, "format:order"),
        "style/slow": ("template-fallback", 3, "timeout"),
        "param/500": ("template-fallback", 3, "http-500"),
        "auto/500-once": ("openai", 2, None),
        "param/malformed-once": ("openai", 2, None),
        "style/garbage": ("template-fallback", 3, "bad-response"),
        "param/fewvariants": ("openai", 1, None),
    }
    for case, (name, attempts, reason) in expected.items():
        info = by_mode[case]
        assert (info["name"], info["attempts"], info["fallback_reason"]) == (name, attempts, reason), case
        assert info["model"] == "stub-vl"  # discovered from GET /v1/models
    for (wf, _), r in zip(cases, results):
        assert parse_completion(r.completion, wf).workflow == wf  # every stored text is valid
        assert len(r.instructions) >= (1 if wf == "auto" else 4)
    assert by_mode["param/ok"]["variants"] == "vlm" and by_mode["param/fewvariants"]["variants"] == "template"
    assert stats["fallbacks"] == 5
    assert stats["fallback_reasons"] == {
        "bad-response": 1,
        "format:order": 2,
        "http-500": 1,
        "timeout": 1,
    }
    assert stats["variant_fallbacks"] == 1
    # retries really went over the wire: the server saw every attempt
    assert server.per_mode["500"] == 3 and server.per_mode["slow"] == 3 and server.per_mode["malformed"] == 6
    assert server.per_mode["500-once"] == 2 and server.per_mode["garbage"] == 3
    assert stats["requests_sent"] == server.requests == sum(r.annotator["attempts"] for r in results)
    assert server.images == server.requests  # every request carried the image as a JPEG data URL


def test_vlm_text_is_used_and_grounded(server: StubServer, tmp_path: Path) -> None:
    ann = make_annotator(_spec(server, tmp_path))
    try:
        (res,) = _run(ann, [("param", "ok")])
    finally:
        ann.close()
    # the stub writes "Adjust carefully: <names>" from the skeleton the prompt gave it
    assert res.reasoning["plans"]["light"] == "Adjust carefully: Exposure2012 increase."
    assert res.reasoning["plans"]["globalcolor"] == "Adjust carefully: IncrementalTemperature decrease."
    assert res.instructions[1:] == [
        "Please give this photo a gentle, polished edit.",
        "Could you make the picture look a bit more refined?",
        "Edit this image so it looks carefully retouched.",
    ]
    assert res.prompt == TemplateAnnotator().annotate(_request(0)).prompt


def test_requests_run_concurrently(tmp_path: Path) -> None:
    latency, n, concurrency = 0.4, 16, 8
    with StubServer(latency=latency) as s:
        ann = make_annotator(_spec(s, tmp_path, concurrency=concurrency, timeout_s=5.0))
        try:
            ann.submit(_request(999), None, key="warm-up").result()  # model discovery, thread start
            s.reset_counters()
            t0 = time.perf_counter()
            results = _run(ann, [("param", "ok")] * n)
            elapsed = time.perf_counter() - t0
        finally:
            ann.close()
        assert all(r.annotator["name"] == "openai" for r in results)
        # bounded by `concurrency`, and really that wide (a loaded machine may stagger the first few)
        assert concurrency // 2 < s.max_in_flight <= concurrency
    ideal = latency * n / concurrency  # 0.8 s; one at a time would take 6.4 s
    assert ideal * 0.95 <= elapsed < ideal * 2.2, elapsed


def test_second_run_hits_the_cache(server: StubServer, tmp_path: Path) -> None:
    cases = [("param", "ok"), ("style", "ok"), ("auto", "ok"), ("param", "malformed")]
    first_ann = make_annotator(_spec(server, tmp_path))
    try:
        first = _run(first_ann, cases)
    finally:
        first_ann.close()
    sent = server.requests
    assert sent == 3 + 3  # three valid answers, one malformed sample tried three times
    second_ann = make_annotator(_spec(server, tmp_path))
    try:
        second = _run(second_ann, cases)
        stats = second_ann.stats()
    finally:
        second_ann.close()
    assert server.requests == sent  # 0 new requests, counted on the server
    assert stats["requests_sent"] == 0 and stats["cache_hits"] == 4
    assert stats["fallbacks"] == 1  # cached fallbacks still count in this run's stats
    assert [a.to_dict() for a in second] == [a.to_dict() for a in first]  # identical records
    entries = list((tmp_path / "cache").rglob("*.json"))
    assert len(entries) == 4 and all(p.parent.name == p.stem[:2] for p in entries)
    for p in entries:
        json.loads(p.read_text(encoding="utf-8"))
    # a different prompt/model/sample key is a different address
    other = make_annotator(_spec(server, tmp_path, model="another-model"))
    try:
        _run(other, cases[:1])
    finally:
        other.close()
    assert server.requests == sent + 1


def test_transient_failures_are_not_cached(server: StubServer, tmp_path: Path) -> None:
    for _ in range(2):
        ann = make_annotator(_spec(server, tmp_path, max_retries=0))
        try:
            (res,) = _run(ann, [("param", "500")])
        finally:
            ann.close()
        assert res.annotator["fallback_reason"] == "http-500"
    assert server.requests == 2  # asked again on the re-run


def test_corrupt_cache_entries_are_misses(server: StubServer, tmp_path: Path) -> None:
    ann = make_annotator(_spec(server, tmp_path))
    try:
        _run(ann, [("param", "ok"), ("auto", "ok")])
    finally:
        ann.close()
    entries = sorted((tmp_path / "cache").rglob("*.json"))
    entries[0].write_text("{not json")
    entries[1].write_text(json.dumps({"cache_format": 1, "key": entries[1].stem, "annotation": {"x": 1}}))
    again = make_annotator(_spec(server, tmp_path))
    try:
        results = _run(again, [("param", "ok"), ("auto", "ok")])
    finally:
        again.close()
    assert again.stats()["cache_hits"] == 0 and server.requests == 4
    assert all(r.annotator["name"] == "openai" for r in results)
    json.loads(entries[0].read_text())  # rewritten


def test_connection_refused_falls_back(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    spec = AnnotatorSpec(
        backend="openai",
        base_url=f"http://127.0.0.1:{port}/v1",
        model="m",
        max_retries=1,
        retry_backoff_s=0.01,
        cache_dir=str(tmp_path / "c"),
    )
    ann = make_annotator(spec)
    try:
        res = ann.submit(_request(1), _image(1), key="x").result(timeout=20)
    finally:
        ann.close()
    assert res.annotator["name"] == "template-fallback"
    assert (res.annotator["attempts"], res.annotator["fallback_reason"]) == (2, "connection")
    assert ann.stats()["fallback_reasons"] == {"connection": 1}


def test_api_key_is_sent_but_never_written(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = "sk-aether-" + secrets.token_hex(16)
    monkeypatch.setenv(API_KEY_ENV, key)
    caplog.set_level(logging.DEBUG)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with StubServer(api_key=key, slow_s=1.0) as s:
        spec = _spec(s, tmp_path)
        ann = make_annotator(spec)
        try:
            results = _run(ann, [("param", "ok"), ("auto", "500"), ("style", "slow"), ("param", "malformed")])
            stats = ann.stats()
            shown = repr(ann) + str(vars(spec))
        finally:
            ann.close()
        assert s.auth_failures == 0 and s.requests > 0  # the key was really used
        (out_dir / "records.json").write_text(json.dumps([r.to_dict() for r in results]))
        (out_dir / "stats.json").write_text(json.dumps(stats))
        (out_dir / "manifest-annotator.json").write_text(json.dumps(annotator_manifest(spec)))
        (out_dir / "spec.json").write_text(spec.model_dump_json())
        # a wrong key is a permanent error: no retry, counted
        monkeypatch.setenv(API_KEY_ENV, "sk-wrong")
        bad = make_annotator(_spec(s, tmp_path / "other", model="stub-vl"))
        try:
            (res,) = _run(bad, [("param", "ok")])
        finally:
            bad.close()
        assert (res.annotator["attempts"], res.annotator["fallback_reason"]) == (1, "http-401")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 5
    for p in files:
        assert key.encode() not in p.read_bytes(), p
    captured = capsys.readouterr()
    for text in (caplog.text, captured.out, captured.err, shown):
        assert key not in text


def test_spec_validation_messages() -> None:
    with pytest.raises(ValidationError, match="needs base_url"):
        AnnotatorSpec(backend="openai")
    with pytest.raises(ValidationError, match="needs model_path"):
        AnnotatorSpec(backend="qwen-vl")
    with pytest.raises(ValidationError, match="Extra inputs"):
        AnnotatorSpec(backend="openai", base_url="http://127.0.0.1:1/v1", api_key="x")
    with pytest.raises(ValidationError, match="AETHER_OPENAI_API_KEY"):
        AnnotatorSpec(backend="openai", base_url="http://user:pw@127.0.0.1:1/v1")
    assert (
        AnnotatorSpec(backend="openai", base_url="http://127.0.0.1:1/v1/").base_url == "http://127.0.0.1:1/v1"
    )


def test_template_backend_returns_completed_futures() -> None:
    backend = make_annotator(None)
    assert isinstance(backend, TemplateBackend)
    req = _request(3, workflow="auto")
    fut = backend.submit(req, _image(3), key="k")
    assert fut.done() and fut.result() == TemplateAnnotator().annotate(req)
    assert backend.stats()["annotations"] == 1 and backend.stats()["requests_sent"] == 0
    assert annotator_manifest(AnnotatorSpec())["backend"] == "template"


def test_answer_validation_is_grounded_in_the_request() -> None:
    req = AnnotationRequest(workflow="param", params={"Exposure2012": 0.5}, masks=[1, 0, 0], seed=0)
    _, user = build_vlm_prompt(req, TemplateAnnotator().annotate(req), 3)
    assert (
        "Exposure2012" in user and "increase" in user and "<plan_globalcolor_start>No change needed." in user
    )
    good = (
        "Instructions:\n1. Brighten it a bit, please.\n2) Lift the exposure slightly.\n"
        "3. <b>bad</b> tagged line\n4. Make the photo a little brighter.\n\n"
        "<plan_light_start>Increase exposure.<plan_light_end>\n"
        "<plan_globalcolor_start>No change needed.<plan_globalcolor_end>\n"
        "<plan_specificcolor_start>No change needed.<plan_specificcolor_end>\n"
        "<retouch_light><retouch_color&temp><retouch_colormixer>"
    )
    parsed = parse_answer(good, req, n_variants=3)
    assert parsed.variants == [
        "Brighten it a bit, please.",
        "Lift the exposure slightly.",
        "Make the photo a little brighter.",
    ]
    # a plan for a group that was not adjusted contradicts the request
    wrong = good.replace(
        "<plan_globalcolor_start>No change needed.", "<plan_globalcolor_start>Warm it up a little."
    )
    with pytest.raises(CompletionFormatError) as err:
        parse_answer(wrong, req, n_variants=3)
    assert err.value.reason == "activity:plan_globalcolor"
    assert parse_variants("1. too\n2. short", 3) == []


def test_cli_build_with_the_openai_annotator_hits_the_cache_on_rerun(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """`aether build --annotator openai --openai-base-url …` twice: the second build sends nothing."""
    from conftest import run_cli

    request.getfixturevalue("ray_session")
    workflow = "style"
    with StubServer() as s:
        args = [
            "build", "--workflow", workflow, "--num-samples", "6", "--samples-per-shard", "3",
            "--workers", "1", "--seed", "3", "--quiet",
            "--annotator", "openai", "--openai-base-url", s.base_url,
            "--annotator-cache-dir", str(tmp_path / "cache"),
        ]  # fmt: skip
        code, text = run_cli(*args, "--out", str(tmp_path / "a"))
        assert code == 0, text
        first = s.requests
        assert first >= 6
        code, text = run_cli(*args, "--out", str(tmp_path / "b"))
        assert code == 0, text
        assert s.requests == first  # every sample came from the cache
    records = []
    for out in ("a", "b"):
        tars = sorted((tmp_path / out / "shards").glob("*.tar"))
        records.append([t.read_bytes() for t in tars])
    assert records[0] == records[1]  # cached annotations rebuild byte-identical shards
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["annotator"]["backend"] == "openai"
