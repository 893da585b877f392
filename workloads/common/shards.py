"""Stable shard assignment of devices, shared by everything that splits an hour's work.

Inputs, model packs and predictions are laid out per shard so that a task reads only its own shard's
files. That works only if every writer and reader (the aggregator, the publisher, the submitter, the
scorer, on different machines and Python versions) computes the same shard for a device, forever:
Python's ``hash()`` is salted per process (PYTHONHASHSEED), so the shard is a fixed prefix of BLAKE2b
instead, which the standard library guarantees everywhere.

A device's sensors all land in the same shard (the key is the device id alone), so one device's
pairs are always scored by the same task.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

MAX_SHARD_COUNT: Final = 65536
# Wide enough for every count up to MAX_SHARD_COUNT, so names sort as numbers under any count.
_WIDTH: Final = len(str(MAX_SHARD_COUNT))
_NAME: Final = re.compile(rf"s(\d{{{_WIDTH}}})-of-(\d{{{_WIDTH}}})")


def _check_count(shard_count: int) -> None:
    # bool is an int; a True shard count is a bug, not 1.
    if isinstance(shard_count, bool) or not isinstance(shard_count, int) or not 1 <= shard_count <= MAX_SHARD_COUNT:
        raise ValueError(f"invalid shard count {shard_count!r}: use an integer from 1 to {MAX_SHARD_COUNT}")


def shard_of(device_id: str, shard_count: int) -> int:
    """The shard (0 .. shard_count-1) of a device: stable across processes, machines and versions.

    The first 8 bytes of BLAKE2b (big-endian) modulo the count: 64 bits make the modulo bias
    negligible (below 2**-47 at the largest count), so shards stay balanced.
    """
    _check_count(shard_count)
    digest = hashlib.blake2b(device_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shard_count


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
