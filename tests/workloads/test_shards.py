from __future__ import annotations

import json
import os
import random
import shutil
import string
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from workloads.common.shards import MAX_SHARD_COUNT, parse_shard_name, partition_of, partition_udf, shard_name, shard_of

# Computed once with the current function and written down: any change of the assignment (which
# would silently move every device to another shard's files) fails here.
PINNED = [
    ("dev-00001", 64, 48),
    ("dev-00002", 64, 4),
    ("dev-1", 16, 10),
    ("device-42", 1024, 922),
    ("plant7.line3.pump-12", 65536, 18835),
    ("", 7, 4),
    ("é-sensor-ü", 1000, 553),
]


@pytest.mark.parametrize(("device_id", "count", "shard"), PINNED)
def test_known_values_are_pinned(device_id: str, count: int, shard: int) -> None:
    assert shard_of(device_id, count) == shard


def test_stable_across_processes_with_other_hash_seeds() -> None:
    code = (
        "import json, sys; from workloads.common.shards import shard_of; "
        "print(json.dumps([shard_of(d, c) for d, c, _ in json.loads(sys.argv[1])]))"
    )
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", code, json.dumps(PINNED)], capture_output=True, text=True, env=env, check=False
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == [shard for _, _, shard in PINNED]


def test_shards_are_balanced() -> None:
    count = 64
    sizes = Counter(shard_of(f"dev-{i:06d}", count) for i in range(100_000))
    assert set(sizes) == set(range(count))
    expected = 100_000 / count
    # A fair assignment stays within a few standard deviations (sqrt(1562) ~ 40) of the mean.
    assert max(sizes.values()) < expected * 1.12 and min(sizes.values()) > expected * 0.88


def test_one_shard_takes_everything() -> None:
    assert {shard_of(f"dev-{i}", 1) for i in range(100)} == {0}


@pytest.mark.parametrize("count", [0, -1, MAX_SHARD_COUNT + 1, True, 2.0])
def test_invalid_shard_counts_are_rejected(count: object) -> None:
    with pytest.raises(ValueError, match="shard count"):
        shard_of("dev-1", count)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shard count"):
        shard_name(0, count)  # type: ignore[arg-type]


def test_shard_names_are_fixed_width_and_sort_in_order() -> None:
    assert shard_name(7, 64) == "s00007-of-00064"
    assert shard_name(MAX_SHARD_COUNT - 1, MAX_SHARD_COUNT) == "s65535-of-65536"
    names = [shard_name(shard, 1000) for shard in range(1000)]
    assert sorted(names) == names and len({len(name) for name in names}) == 1
    # A different count never shares a folder name with the old layout.
    assert not {shard_name(s, 64) for s in range(64)} & {shard_name(s, 128) for s in range(128)}


@pytest.mark.parametrize("shard", [-1, 64, True])
def test_shard_out_of_range_is_rejected(shard: object) -> None:
    with pytest.raises(ValueError, match="invalid shard"):
        shard_name(shard, 64)  # type: ignore[arg-type]


def test_shard_names_parse_back() -> None:
    assert parse_shard_name("s00007-of-00064") == (7, 64)
    assert all(parse_shard_name(shard_name(s, 300)) == (s, 300) for s in range(300))
    for bad in ("s7-of-64", "s00064-of-00064", "s00000-of-00000", "x00001-of-00002", "s00001-of-00002/"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard_name(bad)


_NODE_RUNNER = """
const fs = require("fs");
const udf = eval("(" + fs.readFileSync(process.argv[1], "utf8") + ")");
const cases = JSON.parse(fs.readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(cases.map(([id, end, count]) => udf(id, new Date(end), count))));
"""


def _generated_ids(count: int) -> list[str]:
    """Ids of every shape the contract allows (1-64 of letters, digits, '.', '_', '-'), edge lengths first."""
    alphabet = string.ascii_letters + string.digits + "._-"
    rng = random.Random(15)
    ids = ["a", "Z", "0", ".", "_", "-", "x" * 64, "-" * 64, "." * 63 + "_", "dev-00001", "dev-00002"]
    ids += [f"dev-{i:05d}" for i in range(count // 2)]
    ids += ["".join(rng.choices(alphabet, k=rng.randint(1, 64))) for _ in range(count - len(ids))]
    return ids


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js runs Azurite and this check; install it")
def test_javascript_udf_and_python_agree_on_every_partition(tmp_path: Path) -> None:
    """The stream job's UDF and shards.partition_of name the same folder for every id, hour and count."""
    rng = random.Random(7)
    base = datetime(2026, 11, 25, tzinfo=UTC)
    ids = _generated_ids(40_000)
    # Ids outside the contract still get a folder (the scorer quarantines them there): unicode, astral, empty.
    ids += ["é-sensor-ü", "设备-1", "dev-\U0001f600", ""]
    cases = [
        (device, base + timedelta(minutes=5 * rng.randint(0, 24 * 12 * 400)), rng.choice([1, 4, 16, 64, 1000, 65536]))
        for device in ids
    ]
    script = tmp_path / "partition_udf.js"
    script.write_text(partition_udf(), encoding="utf-8")
    done = subprocess.run(
        ["node", "-e", _NODE_RUNNER, str(script)],
        input=json.dumps([[d, end.isoformat(), count] for d, end, count in cases]),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    from_js = json.loads(done.stdout)
    expected = [partition_of(device, end, count) for device, end, count in cases]
    mismatches = [(case, js, py) for case, js, py in zip(cases, from_js, expected, strict=True) if js != py]
    assert len(from_js) == len(cases) > 40_000
    assert not mismatches, mismatches[:5]


def test_partition_is_the_hour_of_the_window_end_and_the_device_shard() -> None:
    assert partition_of("dev-00001", datetime(2026, 11, 25, 16, 55, tzinfo=UTC), 64) == "2026/11/25/16/s00048-of-00064"
    # The window ending on the hour belongs to the hour that starts there, whatever time it is written.
    assert partition_of("dev-00001", datetime(2026, 11, 25, 17, 0, tzinfo=UTC), 64).startswith("2026/11/25/17/")
