"""Pipeline benchmark (the README performance table): `python benchmarks/bench_pipeline.py --json FILE`.

Same as `aether bench`; see aether_data/bench/__init__.py for what is measured and benchmarks/README.md for
how to read the numbers.
"""

from __future__ import annotations

import argparse
import sys

from aether_data.bench import bench_command


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--json", dest="json_path", default="benchmarks/results.json", help="write the result JSON here"
    )
    ap.add_argument("--markdown", dest="markdown_path", default="benchmarks/results.md")
    ap.add_argument("--samples", type=int, default=288, help="samples per workflow (throughput)")
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--workflows", default="param,style,auto")
    ap.add_argument("--scaling-samples", type=int, default=256)
    ap.add_argument("--memory-samples", default="1000,10000", help="SMALL,LARGE sample counts")
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--workdir", default=None, help="keep corpus and builds here (default: a temp dir)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    return bench_command(**vars(args))


if __name__ == "__main__":
    sys.exit(main())
