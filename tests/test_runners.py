"""Same seed, same config, same records, on every task runner and worker count.

Each case runs ``lionforge evolve``'s flow on gin/smoke.gin through the runner that
``task_runner`` binds, with real runners (threads, processes), and compares every candidate
record with the single-thread run's of the same ``eval_chunk``.
The chunk size is part of the config, not of the runner: it decides which programs train
together, and a fitness can differ in its last bits with its batch-mates (float32 kernels
on tensors of another size), so each chunk size has a single-thread reference of its own.
End to end, so slow; tests/test_evaluate.py pins the evaluator's part (two threads at once)
in the fast set.

The matrix is the smallest that still covers each way a runner could change a record: chunks
of 4 (several tasks at once) on thread pools of 2 and 4 and on a process pool; the default
chunk (the batch as one task, what users run) in a spawned process.  A thread pool given one
task is the single-thread run itself, so that case is not repeated.  A local Dask cluster of
two workers, chunks of 4, is tests/test_scaleout.py's discover, which compares its records
with a single-thread run's the same way (one cluster started for both checks: spawning its
workers costs tens of seconds of CPU).
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest

from flows import config
from flows.prefect_flows import evolve_flow

SMOKE = str(Path(__file__).resolve().parent.parent / "gin" / "smoke.gin")
BUDGET = 32  # two batches of 16: the second is bred from the first one's fitnesses
# A batch of 16 is four tasks at once with chunks of 4, one task with the default chunk.
CHUNKS = {"chunk4": ("EvolveSettings.eval_chunk = 4",), "chunk_default": ()}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def evolve(tmp_path_factory, empty_store, prefect_harness, search_records):
    """``evolve(*bindings)``: the candidate records of a smoke search with those bindings."""

    root = tmp_path_factory.mktemp("runners")
    shutil.copy(empty_store, root / "store.db")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'store.db'}")
    mp.chdir(root)
    runs = itertools.count()

    def run(*bindings: str) -> list[dict]:
        params = [f"EvolveSettings.budget = {BUDGET}", *bindings]
        config.parse([SMOKE], params)
        runner = config.task_runner()
        run_dir = root / f"run{next(runs)}"
        with config.prefect_api_for(runner):
            evolve_flow.with_options(task_runner=runner)([SMOKE], params, str(run_dir),
                                                         None, False)
        return search_records(run_dir)

    try:
        with prefect_harness():
            yield run
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def single_thread(evolve):
    """``single_thread(chunk)``: the reference records, one thread, run once per chunk size."""
    runs: dict[str, list[dict]] = {}

    def reference(chunk: str) -> list[dict]:
        if chunk not in runs:
            records = evolve(*CHUNKS[chunk])
            assert len(records) == BUDGET
            assert sum(r["fitness"] is not None for r in records) > BUDGET // 2  # null is the worst
            runs[chunk] = records
        return runs[chunk]

    return reference


@pytest.mark.parametrize("workers", [2, 4])
def test_a_thread_pool_gives_the_single_thread_records(evolve, single_thread, workers,
                                                       assert_same_records):
    assert_same_records(evolve(f"task_runner.max_workers = {workers}", *CHUNKS["chunk4"]),
          single_thread("chunk4"))


@pytest.mark.parametrize("chunk", list(CHUNKS))
def test_a_process_pool_gives_the_single_thread_records(evolve, single_thread, chunk,
                                                        assert_same_records):
    assert_same_records(evolve("task_runner.kind = 'processes'", "task_runner.max_workers = 2",
                 *CHUNKS[chunk]), single_thread(chunk))

