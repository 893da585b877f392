"""Stable shard assignment of devices, shared by everything that splits an hour's work.

Inputs, model packs and predictions are laid out per shard so that a task reads only its own shard's
files. That works only if every writer and reader (the aggregator, the publisher, the submitter, the
scorer, on different machines and Python versions) computes the same shard for a device, forever:
Python's ``hash()`` is salted per process (PYTHONHASHSEED), so the shard comes from a fixed hash instead.

The Stream Analytics job computes the same shard in its query, to name the folder each aggregate row is
written to (``partition_of``: the hour of the row's window end and its device's shard). ASA's query
language has no hash function, so the hash is one a JavaScript UDF can compute exactly with 32-bit
integer arithmetic: FNV-1a over the id's UTF-8 bytes, then MurmurHash3's 32-bit finaliser (FNV-1a
alone leaves the low bits of similar ids such as ``dev-00001``/``dev-00002`` correlated). The UDF is
``partition_udf.js`` beside this file; tests run it under Node and compare it with this module on tens
of thousands of ids. Changing the function moves devices between shards: it is a migration (rebuild
the packs with ``trainer pack``; rows found in another shard's folder are refiled, never lost).

A device's sensors all land in the same shard (the key is the device id alone), so one device's
pairs are always scored by the same task.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from importlib.resources import files
from typing import Final

from workloads.common.windows import as_utc

MAX_SHARD_COUNT: Final = 65536
# The one default of every tool (demo, submitter, trainer) and of the stack's ``shardCount``; each reads
# SCORING_SHARD_COUNT first, which the stack sets, so a fleet is never planned with one count and packed
# with another.
DEFAULT_SHARD_COUNT: Final = 16
# Wide enough for every count up to MAX_SHARD_COUNT, so names sort as numbers under any count.
_WIDTH: Final = len(str(MAX_SHARD_COUNT))
_NAME: Final = re.compile(rf"s(\d{{{_WIDTH}}})-of-(\d{{{_WIDTH}}})")


def _check_count(shard_count: int) -> None:
    # bool is an int; a True shard count is a bug, not 1.
    if isinstance(shard_count, bool) or not isinstance(shard_count, int) or not 1 <= shard_count <= MAX_SHARD_COUNT:
        raise ValueError(f"invalid shard count {shard_count!r}: use an integer from 1 to {MAX_SHARD_COUNT}")


_MASK: Final = 0xFFFFFFFF


@lru_cache(maxsize=1 << 18)
def device_hash(device_id: str | None) -> int:
    """The 32-bit hash of a device id that ``partition_udf.js`` computes too (None hashes like "")."""
    value = 0x811C9DC5
    for byte in (device_id or "").encode("utf-8", "surrogatepass"):
        value = ((value ^ byte) * 0x01000193) & _MASK
    value ^= value >> 16
    value = (value * 0x85EBCA6B) & _MASK
    value ^= value >> 13
    value = (value * 0xC2B2AE35) & _MASK
    return value ^ (value >> 16)


def shard_of(device_id: str, shard_count: int) -> int:
    """The shard (0 .. shard_count-1) of a device: stable across processes, machines and versions.

    A 32-bit hash modulo the count: the modulo bias is below count / 2**32 (1.5e-5 at the largest
    count), so shards stay balanced.
    """
    _check_count(shard_count)
    return device_hash(device_id) % shard_count


def shard_name(shard: int, shard_count: int) -> str:
    """A fixed-width folder name such as ``s00007-of-00064``.

    The count is part of the name, so files written under one shard count never mix with another's
    after the count changes; the fixed width makes listings sort in shard order.
    """
    _check_count(shard_count)
    if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < shard_count:
        raise ValueError(f"invalid shard {shard!r} for {shard_count} shards: use 0 to {shard_count - 1}")
    return f"s{shard:0{_WIDTH}d}-of-{shard_count:0{_WIDTH}d}"


def parse_shard_name(name: str) -> tuple[int, int]:
    """(shard, shard_count) from a name made by :func:`shard_name`; ValueError for anything else."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise ValueError(f"invalid shard name {name!r}: expected e.g. {shard_name(7, 64)!r}")
    shard, count = int(match[1]), int(match[2])
    if shard_name(shard, count) != name:  # also range-checks both numbers
        raise ValueError(f"invalid shard name {name!r}")
    return shard, count


def partition_of(device_id: str | None, window_end: datetime, shard_count: int) -> str:
    """The folder of an aggregate row under ``aggregates/``: ``yyyy/MM/dd/HH/<shard name>``, the UTC hour of
    its window end and its device's shard. The data decides it, never the time the row was written."""
    return f"{as_utc(window_end):%Y/%m/%d/%H}/{shard_name(shard_of(device_id or '', shard_count), shard_count)}"


def partitions_of(devices: Sequence[str | None], hours: Sequence[datetime], shard_count: int) -> list[str]:
    """``partition_of`` for many rows (``hours``: each row's window end floored to the hour), computed once per
    distinct device and hour, not once per row."""
    keys = list(zip(devices, hours, strict=True))
    places = {key: partition_of(key[0], key[1], shard_count) for key in set(keys)}
    return [places[key] for key in keys]


def partition_udf() -> str:
    """The JavaScript of ``partition_of``, as deployed to Stream Analytics (an anonymous function)."""
    return files("workloads.common").joinpath("partition_udf.js").read_text(encoding="utf-8").strip()


def slice_of(device_id: str, shard_count: int, slices: int) -> int:
    """The slice (0 .. slices-1) of a device within its shard, for a shard too large for one task.

    It uses the hash's bits above those the shard took, so a shard's devices spread evenly over its slices.
    """
    _check_count(shard_count)
    return (device_hash(device_id) // shard_count) % slices


def is_shard_folder(name: str | None, shard_count: int) -> bool:
    """Whether a folder name is one of the shards of ``shard_count`` (a folder of another count is not)."""
    try:
        return name is not None and parse_shard_name(name)[1] == shard_count
    except ValueError:
        return False
