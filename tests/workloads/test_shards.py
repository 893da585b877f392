from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from workloads.common.shards import MAX_SHARD_COUNT, parse_shard_name, shard_name, shard_of

# Computed once with the current function and written down: any change of the assignment (which
# would silently move every device to another shard's files) fails here.
PINNED = [
    ("dev-00001", 64, 40),
    ("dev-00002", 64, 47),
    ("dev-1", 16, 15),
    ("device-42", 1024, 1005),
    ("plant7.line3.pump-12", 65536, 33295),
    ("", 7, 0),
    ("é-sensor-ü", 1000, 252),
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
