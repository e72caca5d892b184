"""The command line for people: help text on every option, an Examples block on every command,
choices listed for a bad value, and a one-line error instead of a traceback for a user's mistake
(eval without a model, an unreachable s3 URI, a damaged manifest); dataset URIs stay URIs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

REPO = Path(__file__).resolve().parents[1]


def _commands():
    from aether_data.cli import app

    def walk(c, path):
        if hasattr(c, "commands"):
            for n, sub in c.commands.items():
                yield from walk(sub, [*path, n])
        else:
            yield " ".join(path), c

    return list(walk(typer.main.get_command(app), []))


def _cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", "AWS_EC2_METADATA_DISABLED": "true"}
    return subprocess.run(
        [sys.executable, "-m", "aether_data.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_every_option_has_help_and_every_command_examples():
    from aether_data.cli_examples import EXAMPLES

    commands = dict(_commands())
    assert set(commands) == set(EXAMPLES)
    for name, cmd in commands.items():
        assert cmd.epilog and "Examples" in cmd.epilog, name
        for p in cmd.params:
            if type(p).__name__.endswith("Option"):
                assert p.help, f"aether {name} {p.opts[0]} has no help"
        for line in EXAMPLES[name]:
            assert line.startswith(f"aether {name}"), line


def test_every_help_paragraph_is_one_line():
    """Help keeps a docstring's line breaks (the command lists show its first paragraph as is): a
    paragraph wrapped in the source would break mid-sentence on screen."""
    for name, cmd in _commands():
        paragraphs = (cmd.help or "").strip().split("\n\n")
        assert paragraphs[0], f"aether {name} has no help"
        for p in paragraphs:
            assert "\n" not in p.strip(), f"aether {name}: {p!r}"


def test_help_shows_defaults_and_examples():
    proc = _cli("build", "--help")
    assert proc.returncode == 0
    text = proc.stdout
    for needle in ("Examples", "aether build --workflow param", "[default: aether-out]", "keep_ratio",
                   "center_crop", "border", "[default: the spec's, 64]"):  # fmt: skip
        assert needle in text, needle


def test_bad_workflow_lists_the_choices():
    proc = _cli("build", "--workflow", "foo")
    assert proc.returncode == 2
    for w in ("param", "style", "auto", "region", "all"):
        assert f"'{w}'" in proc.stderr
    assert "pipeline spec" not in proc.stderr and "Traceback" not in proc.stderr
    from aether_data.config import SpecError, load_spec

    with pytest.raises(SpecError, match="choose from param, style, auto, region, all"):
        load_spec(None, "foo")


def test_eval_without_a_model_is_a_usage_error():
    for args in (["eval"], ["eval", "--data", "some/dir"]):
        proc = _cli(*args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "error:" in proc.stderr and "--model" in proc.stderr


def test_unreachable_s3_uri_is_an_error_not_a_traceback():
    env_endpoint = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }
    os.environ.update(env_endpoint)  # a closed local port: fails fast, no network needed
    try:
        for cmd in ("audit", "inspect", "report"):
            proc = _cli(cmd, "s3://aether-no-such-bucket/run", timeout=180)
            assert proc.returncode in (1, 2), (cmd, proc.stderr[-2000:])
            assert "Traceback" not in proc.stderr, (cmd, proc.stderr[-2000:])
            assert "error:" in proc.stderr and "s3://aether-no-such-bucket/run" in proc.stderr, cmd
            assert "s3:/aether" not in proc.stderr.replace("s3://", ""), cmd
    finally:
        for k in env_endpoint:
            os.environ.pop(k, None)


def test_report_on_a_damaged_manifest(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "manifest.json").write_text('{"samples": 3,')
    proc = _cli("report", str(out))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "manifest.json is damaged" in proc.stderr
    (out / "manifest.json").write_text('{"samples": 3}')
    proc = _cli("report", str(out))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "damaged" in proc.stderr
    shutil.rmtree(out)
    proc = _cli("report", str(out))
    assert proc.returncode == 1 and "no manifest.json" in proc.stderr


def test_dataset_arguments_are_strings():
    """A Path argument would turn s3://bucket/run into s3:/bucket/run before the command sees it."""
    import typing

    commands = dict(_commands())
    for name in ("audit", "inspect", "report", "export"):
        hints = typing.get_type_hints(commands[name].callback, include_extras=True)
        for p in commands[name].params:
            if type(p).__name__.endswith("Argument"):
                assert "Path" not in repr(hints[p.name]), (name, p.name)


def test_the_cli_starts_without_torch_or_the_build_driver():
    """Every `aether` command imports the CLI module; torch (~2 s) and the build driver (~0.9 s)
    load only when a command uses them (`aether --help` took 4.2 s when both loaded eagerly)."""
    code = (
        "import sys, aether_data.cli\n"
        "heavy = [m for m in ('torch', 'ray', 'aether_data.build.run') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from model_core import RetouchRenderer, get_config\n"  # the public names still resolve
        "from aether_data.build import run_build\n"
        "assert 'torch' in sys.modules and callable(run_build) and get_config('cpu') is not None\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
