"""The GPU path, checked and measured in one short run on a machine with a GPU.

1. Which devices TensorFlow sees (nothing to check without a GPU: it says so and stops).
2. The tests that exercise the device path (the batched evaluator's register machine and
   training loop, every op, ProgramOptimizer in Keras' compiled step) with the GPU visible.
3. ``benchmarks/throughput.py`` twice, on the GPU and with the GPU hidden
   (``CUDA_VISIBLE_DEVICES=-1``), and the evaluator's candidates/s side by side; the GPU run
   also prints the device's peak memory per task scale.

Prints a last line like
``gpu: 5210.4 candidates/s on /device:GPU:0; cpu: 570.6 candidates/s; ratio: 9.13``.

Run: ``.venv/bin/python benchmarks/gpu_check.py [--population 4096]`` (a few minutes).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["tests/test_evaluate.py", "tests/test_ops.py", "tests/test_keras_optimizer.py"]
_RATE = re.compile(r"^throughput: ([0-9.]+) candidates/s", re.M)


def _throughput(population: int, hide_gpu: bool) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    if hide_gpu:
        env["CUDA_VISIBLE_DEVICES"] = "-1"
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--population",
         str(population), "--repeats", "3", *(["--memory", ""] if hide_gpu else [])],
        env=env, capture_output=True, text=True, check=True)
    found = _RATE.search(out.stdout)
    if found is None:
        raise RuntimeError(f"throughput.py printed no rate:\n{out.stdout[-2000:]}")
    return float(found.group(1)), out.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--population", type=int, default=1024)
    ap.add_argument("--skip_tests", action="store_true")
    args = ap.parse_args()
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    print(f"TensorFlow {tf.__version__}; GPUs: {[g.name for g in gpus] or 'none'}", flush=True)
    if not gpus:
        print("no GPU visible: nothing to check (the CPU path is what `make test` checks)")
        return 0
    if not args.skip_tests:
        tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", *TESTS], cwd=ROOT,
                               capture_output=True, text=True)
        print(tests.stdout.strip().splitlines()[-1], flush=True)
        if tests.returncode != 0:
            print(tests.stdout[-4000:])
            return 1
    gpu, gpu_out = _throughput(args.population, hide_gpu=False)
    print(gpu_out, end="", flush=True)
    cpu, _ = _throughput(args.population, hide_gpu=True)
    print(f"gpu: {gpu:.1f} candidates/s on {gpus[0].name}; cpu: {cpu:.1f} candidates/s; "
          f"ratio: {gpu / cpu:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
