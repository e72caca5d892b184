"""Annotations per second: the template annotator and the openai backend against a loopback stub.

The stub server (tests/annotate_stub_server.py) answers every chat request validly after a fixed
latency, so the openai figure measures the client's concurrency: with `concurrency` requests in
flight and latency L, the ceiling is concurrency / L annotations/s and the acceptance bar is
≥ 0.8 × concurrency / L. A third row re-runs the same samples against the warm cache (no request).
Every sample has a 512² image. By default it is passed as encoded JPEG bytes, as the shard builder
passes its stored input (sent as they are); `--image-mode array` passes float pixels instead (the
backend then hashes and JPEG-encodes them itself, which costs CPU on a small machine).

Usage::

    PYTHONPATH=. python benchmarks/bench_annotators.py                       # 0.2 s latency, 8 wide
    PYTHONPATH=. python benchmarks/bench_annotators.py --latency 0.1 --concurrency 32 --n 320

Prints one markdown table row per backend and writes JSON (default
``benchmarks/results/bench_annotators.json``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from annotate_stub_server import StubServer  # noqa: E402

from aether_data import params as P  # noqa: E402
from aether_data.annotate import AnnotationRequest, Annotator, make_annotator  # noqa: E402
from aether_data.config import AnnotatorSpec  # noqa: E402
from aether_data.sampling import PROTOCOLS, load_operator_stats, rng_for, sample_params  # noqa: E402


def make_requests(n: int, seed: int = 0) -> list[AnnotationRequest]:
    """n param/auto requests with real sampled parameters (all 7 protocols in turn)."""
    stats = load_operator_stats()
    out = []
    for i in range(n):
        rng = rng_for(seed * 1_000_003 + i)
        _, params = sample_params(rng, PROTOCOLS[i % len(PROTOCOLS)], stats, degrade=bool(i % 2))
        out.append(
            AnnotationRequest(
                workflow="auto" if i % 2 else "param",
                params=params,
                masks=P.masks(params),
                seed=i,
                image_stats={"mean_luminance": 0.4, "contrast": 0.2},
            )
        )
    return out


def _jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((img * 255 + 0.5).astype(np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def run(
    annotator: Annotator, requests: list[AnnotationRequest], images: list[np.ndarray]
) -> tuple[float, dict]:
    """Submit everything (as the shard builder does), collect; return (seconds, stats)."""
    t0 = time.perf_counter()
    futures = [
        annotator.submit(r, im, key=f"bench-{i:06d}") for i, (r, im) in enumerate(zip(requests, images))
    ]
    annotator.flush()
    results = [f.result() for f in futures]
    seconds = time.perf_counter() - t0
    assert len(results) == len(requests)
    return seconds, annotator.stats()


def main() -> None:
    """Run the benchmark. Kept whole: a script's flags, runs and printout, read top to bottom."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=160, help="samples per run")
    ap.add_argument("--latency", type=float, default=0.2, help="stub latency per request (s)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--image-mode", choices=("bytes", "array"), default="bytes")
    ap.add_argument("--out", default="benchmarks/results/bench_annotators.json")
    args = ap.parse_args()

    requests = make_requests(args.n)
    rng = np.random.default_rng(0)
    images: list = [
        rng.random((args.image_size, args.image_size, 3), dtype=np.float32) for _ in range(args.n)
    ]
    if args.image_mode == "bytes":
        images = [_jpeg(im) for im in images]
    rows = []

    template = make_annotator(None)
    secs, stats = run(template, requests, images)
    rows.append({"backend": "template", "n": args.n, "seconds": secs, "per_s": args.n / secs, **stats})

    with tempfile.TemporaryDirectory() as cache, StubServer(latency=args.latency) as server:
        spec = AnnotatorSpec(
            backend="openai",
            base_url=server.base_url,
            concurrency=args.concurrency,
            timeout_s=30,
            cache_dir=cache,
        )
        ann = make_annotator(spec)
        ann.submit(requests[0], None, key="warm-up").result()  # model discovery, first connection
        server.reset_counters()
        before = ann.stats()
        secs, stats = run(ann, requests, images)
        stats = {k: v - before[k] if isinstance(v, int) else v for k, v in stats.items()}  # minus warm-up
        ann.close()
        ceiling = args.concurrency / args.latency
        rows.append(
            {
                "backend": "openai",
                "n": args.n,
                "seconds": secs,
                "per_s": args.n / secs,
                "latency_s": args.latency,
                "concurrency": args.concurrency,
                "ceiling_per_s": ceiling,
                "bar_per_s": 0.8 * ceiling,
                "passes_bar": args.n / secs >= 0.8 * ceiling,
                "server_requests": server.requests,
                "server_max_in_flight": server.max_in_flight,
                **stats,
            }
        )
        cached = make_annotator(spec)
        secs, stats = run(cached, requests, images)
        cached.close()
        rows.append(
            {"backend": "openai (cache hits)", "n": args.n, "seconds": secs, "per_s": args.n / secs, **stats}
        )

    print("| backend | n | seconds | annotations/s | requests | cache hits | fallbacks |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['backend']} | {r['n']} | {r['seconds']:.2f} | {r['per_s']:.1f} | {r['requests_sent']} "
            f"| {r['cache_hits']} | {r['fallbacks']} |"
        )
    o = rows[1]
    verdict = "PASS" if o["passes_bar"] else "FAIL"
    print(
        f"openai: {o['per_s']:.1f}/s vs bar 0.8 × {args.concurrency} / {args.latency} = {o['bar_per_s']:.1f}/s "
        f"(ceiling {o['ceiling_per_s']:.1f}/s, max in flight {o['server_max_in_flight']}): {verdict}"
    )
    meta = {
        "image_mode": args.image_mode,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "image_size": args.image_size,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    if not o["passes_bar"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
