"""Device/sensor pair identity.

Pair parts end up in blob paths and Batch command lines, so they are validated once, here, instead of
being escaped in many places.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PART_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_PART = re.compile(PART_PATTERN)


def validate_part(kind: str, value: str) -> str:
    if not _PART.fullmatch(value):
        raise ValueError(
            f"invalid {kind} {value!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return value


@dataclass(frozen=True, order=True, slots=True)
class Pair:
    """One device/sensor pair: the unit that owns a model and gets scored."""

    device_id: str
    sensor: str

    def __post_init__(self) -> None:
        validate_part("device id", self.device_id)
        validate_part("sensor name", self.sensor)

    def __str__(self) -> str:
        return f"{self.device_id}/{self.sensor}"

    @classmethod
    def parse(cls, text: str) -> Pair:
        """Parse ``device/sensor`` (the form used on command lines and in manifests)."""
        device_id, sep, sensor = text.strip().partition("/")
        if not sep:
            raise ValueError(f"invalid pair {text!r}: expected DEVICE/SENSOR")
        return cls(device_id, sensor)
