"""The reference style the fleet benchmark compares with: one process scores one pair.

As in the per-model batch scoring samples: a fresh Python process reads the whole hour's data file,
keeps its pair's rows, unpickles the pair's model and scores them. Prints the flags and scores (and
its own peak RSS, for the benchmark) as one JSON line. Run as a script
(``python benchmarks/fleet_reference.py DATA MODEL DEVICE SENSOR FEATURES``), so that it imports
nothing of the project.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import pandas as pd


def main(data: str, model: str, device: str, sensor: str, features: str) -> None:
    frame = pd.read_parquet(data)
    rows = frame[(frame["device_id"] == device) & (frame["sensor"] == sensor)].sort_values("window_end")
    estimator = pickle.loads(Path(model).read_bytes())  # the benchmark's own files: the reference style trusts them
    matrix = rows[features.split(",")].to_numpy(dtype="float64")
    flags = estimator.predict(matrix) == -1
    scores = estimator.decision_function(matrix)
    status = Path("/proc/self/status")
    lines = status.read_text().splitlines() if status.exists() else []
    peak = [line.split()[1] for line in lines if line.startswith("VmHWM:")]
    print(json.dumps({"flags": flags.tolist(), "scores": scores.tolist(), "peak_rss_kib": int(peak[0]) if peak else 0}))


if __name__ == "__main__":
    main(*sys.argv[1:6])
