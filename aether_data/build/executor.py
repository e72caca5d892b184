"""Where shards run: Ray Data actors, and how Ctrl-C stops them. The only module that knows Ray.

Ray is imported inside the functions that need it, so planning, tests of single shards and the
bench never pay for it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa

from aether_data.build.errors import BuildError
from aether_data.build.plan import Planner, ShardSpan
from aether_data.build.shard import ShardContext, ShardTask, node_label
from aether_data.build.tuning import limit_threads
from aether_data.config import PipelineSpec
from aether_data.io import storage

__all__ = [
    "INTERRUPTED",
    "ProgressCounter",
    "ShardBuilder",
    "catch_interrupts",
    "execute",
    "init_ray",
    "keep_interrupt_handler",
]

PROGRESS_POLL_S = 0.5


class ProgressCounter:
    """Samples processed so far, summed over workers (a Ray actor; see `execute`).

    Only counts for the console: workers tell it after each sample and never wait for it, so it
    cannot change what a shard writes (shards stay pure) nor slow them down; a lost message only
    makes the bar lag until the shard's own result arrives.
    """

    def __init__(self) -> None:
        self.done: dict[str, int] = {}

    def add(self, shard: str, done: int) -> None:
        self.done[shard] = max(self.done.get(shard, 0), done)  # per shard: a retried shard restarts

    def read(self) -> dict[str, int]:
        return dict(self.done)


class ShardBuilder:
    """Ray Data actor: loads workflow resources once, then builds shard after shard."""

    def __init__(
        self,
        spec_json: str,
        out_dir: str,
        sources: list[Any],
        fingerprint_json: str = "",
        counter: Any = None,
    ) -> None:
        limit_threads(1)
        self.counter = counter
        spec = PipelineSpec.model_validate_json(spec_json)
        # A worker that cannot set up (missing model weights, bad preset library) reports that on
        # every shard instead of dying: an actor death in __init__ would abort the whole Ray job.
        self.setup_error: str | None = None
        try:
            self.ctx = ShardContext(spec, out_dir)
            if fingerprint_json:  # (fingerprint, document): recorded in every index it writes
                fp = json.loads(fingerprint_json)
                self.ctx.fingerprint = (fp["fingerprint"], fp["doc"])
        except Exception as exc:
            self.setup_error = f"worker setup failed: {type(exc).__name__}: {exc}"
        import ray

        # [ObjectRef of the source list]: rows are computed here, per shard
        self.planner = Planner(spec, ray.get(sources[0]))
        if self.setup_error is None:  # a failing source is replaced by the plan's next ones
            self.ctx.renderer.alternate = self.planner.alternate

    def task_for(self, item: dict[str, Any]) -> ShardTask:
        """The shard's rows, computed here from its span, the spec and the shared source list."""
        span = ShardSpan.from_item(item)
        return ShardTask(span.name, span.workflow, self.planner.rows(span))

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        try:
            if self.setup_error is not None:
                raise BuildError(self.setup_error)
            on_sample = None
            if self.counter is not None:
                name, counter = item["name"], self.counter

                def on_sample(done: int) -> None:
                    with contextlib.suppress(Exception):  # progress is a courtesy, never a failure
                        counter.add.remote(name, done)

            return self.ctx.build_shard(self.task_for(item), on_sample=on_sample)
        except Exception as exc:  # a whole-shard failure (disk full, read-only output) is reported
            return {
                "name": item["name"],
                "ok": False,
                "samples": 0,
                "skipped": 0,
                "reasons": {},
                "error": str(exc) if isinstance(exc, BuildError) else f"{type(exc).__name__}: {exc}",
                "stages": "{}",
                "node": node_label(),
            }


def init_ray(address: str | None, workers: int) -> None:
    """Join a cluster (`--ray-address` / RAY_ADDRESS) or start an embedded local Ray."""
    import ray

    if ray.is_initialized():
        return
    with _ray_quiet():
        _init_ray(address, workers)


def ray_verbose() -> bool:
    """Ray's own console output was asked for (`aether build --verbose` or AETHER_RAY_VERBOSE=1)."""
    return os.environ.get("AETHER_RAY_VERBOSE", "") not in ("", "0")


@contextlib.contextmanager
def _ray_quiet() -> Iterator[None]:
    """Send what Ray's C++ core writes straight to fd 2 while it starts (``logging.cc:303: Set ray
    log level …``) to a temp file instead of into the progress bar; shown if the start fails."""
    if ray_verbose():
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            os.write(2, sink.read()[-4000:])
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _init_ray(address: str | None, workers: int) -> None:
    import ray

    verbose = ray_verbose()
    address = address or os.environ.get("RAY_ADDRESS") or None
    common: dict[str, Any] = {"include_dashboard": False, "logging_level": "INFO" if verbose else "WARNING"}
    if address:
        ray.init(address=address, **common)
    else:
        # The embedded cluster's chatter is noise to a data engineer; sample failures are
        # recorded in the manifest and in OUT/logs/, not on the console.
        # (RAY_BACKEND_LOG_LEVEL=fatal hides a C++ warning Ray Data's restartable actor pools
        # always trigger; set it yourself to see everything.)
        if not verbose:
            os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
            common.update(log_to_driver=False, logging_level="ERROR")
        ray.init(num_cpus=max(workers, os.cpu_count() or 1), **common)


def execute(
    spec: PipelineSpec,
    out_dir: storage.AnyPath,
    spans: Sequence[ShardSpan],
    workers: int,
    sources: Sequence[str],
    fingerprint: tuple[str, dict[str, Any]] | None = None,
    on_progress: Callable[[dict[str, int]], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Run shard tasks on Ray Data, yielding each shard's summary as it completes.

    ``on_progress`` is called from a driver thread about twice a second with the samples each
    running shard has processed (shard name → count), read from a `ProgressCounter` actor.

    Items are shard spans (name, workflow, first index, count); each worker computes its rows
    from the spec and the source list, which is put once into Ray's object store (shared memory,
    not copied into every task).
    """
    import ray
    import ray.data

    for name in ("ray.data", "ray.data._internal"):  # our progress replaces Ray Data's chatter
        logging.getLogger(name).setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    items = [t.to_item() for t in spans]
    sources_ref = ray.put(pa.array(list(sources), type=pa.large_string()))
    counter = None
    if on_progress is not None:
        counter = ray.remote(num_cpus=0)(ProgressCounter).remote()
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map(
        ShardBuilder,
        fn_constructor_kwargs={
            "spec_json": spec.model_dump_json(),
            "out_dir": str(out_dir),
            "sources": [sources_ref],  # in a list: resolved by the actor, not by Ray Data
            "fingerprint_json": json.dumps({"fingerprint": fingerprint[0], "doc": fingerprint[1]})
            if fingerprint
            else "",
            "counter": counter,
        },
        # two shards in flight per actor: the next shard is already queued when one finishes, so
        # an actor never idles while the driver notices and dispatches (with 1 in flight the 2-worker
        # busy-window speed-up on 2 cores was 1.34×, with 2 it is 1.6–1.7×); more would only let the
        # first actor to start hoard shards and make the tail wait on it
        compute=ray.data.ActorPoolStrategy(size=min(workers, len(items)), max_tasks_in_flight_per_actor=2),
        num_cpus=1,
        num_gpus=spec.annotator.num_gpus or None,  # a qwen-vl annotator on the GPU
    )  # Ray Data restarts dead actors and retries their tasks by default (max_restarts=-1)
    if counter is None or on_progress is None:
        yield from ds.iter_rows()
        return
    stop = threading.Event()
    poller = threading.Thread(target=_poll, args=(counter, on_progress, stop), daemon=True)
    poller.start()
    try:
        yield from ds.iter_rows()
    finally:
        stop.set()
        poller.join(timeout=2)
        with contextlib.suppress(Exception):
            ray.kill(counter)


def _poll(counter: Any, on_progress: Callable[[dict[str, int]], None], stop: threading.Event) -> None:
    """The driver's progress thread: read the counter, hand it to the console, until stopped."""
    import ray

    while not stop.wait(PROGRESS_POLL_S):
        try:
            on_progress(ray.get(counter.read.remote(), timeout=5))
        except Exception:  # a slow or gone counter only pauses the bar
            continue


INTERRUPTED = threading.Event()
"""Set by `catch_interrupts`' SIGINT handler. A KeyboardInterrupt raised while Ray Data's iterator
is in its own cleanup can be swallowed there (seen once in CI: a build interrupted after two shards
ran to completion); the build loop checks this flag after every shard, so Ctrl-C always stops it."""


def _interrupt_handler(signum: int, frame: Any) -> None:
    INTERRUPTED.set()
    signal.default_int_handler(signum, frame)  # still raises KeyboardInterrupt


_installed_handler = False


def catch_interrupts() -> None:
    """Install the SIGINT handler behind `INTERRUPTED` (the CLI does; main thread only)."""
    global _installed_handler
    INTERRUPTED.clear()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _interrupt_handler)
        _installed_handler = True


def keep_interrupt_handler() -> None:
    """Put our handler back if something (Ray's start-up) replaced it; never install it uninvited."""
    if _installed_handler and signal.getsignal(signal.SIGINT) is not _interrupt_handler:
        signal.signal(signal.SIGINT, _interrupt_handler)
