"""How the compiled kernel scales with cores: N pairs scored by 1, 2, 4, ... worker processes.

numpy only (no scikit-learn, no storage), so it runs on any machine with numpy, e.g. a 16-core one via the
`device` tool: `python -m benchmarks.kernel_scaling --pairs 100000 --workers 1 2 4 8 16 --out scaling.json`.
Models are synthetic RBF one-class SVMs shaped like the platform's (4 features, ~14 support vectors, a
StandardScaler); every worker gets an equal share of pairs and one BLAS/OpenMP thread, so cores are not
oversubscribed. Reports wall time, pairs/s and speed-up over one worker; no assertion on any number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402 (after the thread limits, which numpy reads on import)

from workloads.common.fastpath import CompiledModel, score_many  # noqa: E402

FEATURES, WINDOWS = 4, 12


def fleet(pairs: int, seed: int) -> tuple[list[CompiledModel], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    models, matrices = [], []
    for _ in range(pairs):
        n_sv = int(rng.integers(9, 21))
        models.append(
            CompiledModel(
                kernel="rbf",
                gamma=float(1.0 / FEATURES),
                coef0=0.0,
                degree=3,
                mean=rng.normal(20, 1, FEATURES),
                scale=rng.uniform(0.5, 2, FEATURES),
                support_vectors=rng.normal(0, 1, (n_sv, FEATURES)),
                dual_coef=rng.uniform(0.01, 1, n_sv),
                intercept=float(-rng.uniform(0.1, 1)),
            )
        )
        matrices.append(rng.normal(20, 1.5, (WINDOWS, FEATURES)))
    return models, matrices


def _score_share(args: tuple[int, int, int]) -> tuple[int, float]:
    """Build this worker's share (not timed), then score it; returns (pairs, seconds spent scoring)."""
    pairs, seed, _worker = args
    models, matrices = fleet(pairs, seed)
    started = time.perf_counter()
    results = score_many(models, matrices)
    return len(results), time.perf_counter() - started


def run(pairs: int, workers: int) -> dict[str, float]:
    share = pairs // workers
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_score_share, [(1, w, w) for w in range(workers)]))  # warm: imports, first call
        started = time.perf_counter()
        done = list(pool.map(_score_share, [(share, 1000 + w, w) for w in range(workers)]))
        wall = time.perf_counter() - started
    scored = sum(n for n, _ in done)
    slowest = max(seconds for _, seconds in done)
    # Wall includes each worker building its share; throughput is judged by the slowest worker's scoring time.
    return {"workers": workers, "pairs": scored, "wall_s": wall, "score_s": slowest, "pairs_per_s": scored / slowest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", default="build/bench/kernel_scaling.json")
    args = parser.parse_args()
    rows = [run(args.pairs, w) for w in args.workers]
    base = rows[0]["pairs_per_s"] / rows[0]["workers"]
    print(f"{'workers':>7} {'pairs':>8} {'score s':>8} {'pairs/s':>10} {'speed-up':>8} {'efficiency':>10}")
    for row in rows:
        speedup = row["pairs_per_s"] / base
        row["speedup"], row["efficiency"] = speedup, speedup / row["workers"]
        print(
            f"{row['workers']:>7} {row['pairs']:>8} {row['score_s']:>8.2f} {row['pairs_per_s']:>10.0f} "
            f"{speedup:>8.2f} {row['efficiency']:>10.2f}"
        )
    result = {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
