"""Typed, validated stack configuration, read once from ``Pulumi.<stack>.yaml``.

Keys live under the ``batchscoring`` namespace in camelCase (``batchscoring:maxNodes``). Every
invalid or unknown key is reported at once, with its name and the allowed range, before any
resource is declared.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo

from infra.autoscale import AutoscaleSpec
from workloads.common.aggregates import AggregationSpec

NAMESPACE = "batchscoring"
VM_SIZE = re.compile(r"^Standard_[A-Z][A-Za-z0-9_-]*$")
LOCATION = re.compile(r"^[a-z][a-z0-9]{2,30}$")


class ConfigError(ValueError):
    """Raised with one line per invalid key, e.g. ``batchscoring:maxNodes: ...``."""


class PlatformConfig(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    location: Annotated[str, Field(pattern=LOCATION.pattern, description="Azure region, e.g. westeurope.")] = (
        "westeurope"
    )
    name_prefix: Annotated[
        str, Field(pattern=r"^[a-z][a-z0-9]{1,7}$", description="2-8 lowercase letters/digits; starts Azure names.")
    ] = "bscore"
    vm_size: Annotated[str, Field(pattern=VM_SIZE.pattern, description="Batch node VM size, e.g. Standard_D2s_v5.")] = (
        "Standard_D2s_v5"
    )
    min_nodes: Annotated[int, Field(ge=0, le=300, description="Nodes kept when nothing is pending.")] = 0
    max_nodes: Annotated[int, Field(ge=1, le=300, description="Upper bound of the autoscaled pool.")] = 4
    spot_nodes: Annotated[bool, Field(description="Use Spot (low-priority) nodes instead of dedicated ones.")] = False
    task_slots_per_node: Annotated[int, Field(ge=1, le=256, description="Tasks one node runs at once.")] = 1
    autoscale_interval_minutes: Annotated[
        int, Field(ge=5, le=10080, description="How often Batch evaluates the formula (service minimum: 5).")
    ] = 5
    window_minutes: Annotated[int, Field(ge=1, le=60, description="Tumbling window length; must divide 60.")] = 5
    late_tolerance_seconds: Annotated[int, Field(ge=0, le=1_814_399, description="Late-arrival tolerance.")] = 300
    schedule_frequency: Annotated[
        Literal["Minute", "Hour", "Day"], Field(description="Recurrence unit of the Logic App trigger.")
    ] = "Hour"
    schedule_interval: Annotated[int, Field(ge=1, le=1000, description="Recurrence count of that unit.")] = 1
    schedule_minute: Annotated[int, Field(ge=0, le=59, description="Minute past the hour the run starts.")] = 10
    time_zone: Annotated[
        str, Field(min_length=1, max_length=64, description="Windows time zone name of the trigger, e.g. UTC.")
    ] = "UTC"
    chunk_size: Annotated[int, Field(ge=1, le=10_000, description="Device/sensor pairs per Batch task.")] = 50
    lateness_minutes: Annotated[int, Field(ge=0, le=180, description="Wait after an hour before scoring it.")] = 5
    task_max_retries: Annotated[int, Field(ge=0, le=10, description="Retries of a failed Batch task.")] = 2
    task_max_wall_minutes: Annotated[int, Field(ge=1, le=1440, description="Wall-clock limit of a Batch task.")] = 30
    aggregates_retention_days: Annotated[int, Field(ge=1, le=3650, description="Days aggregates are kept.")] = 30
    predictions_retention_days: Annotated[int, Field(ge=1, le=3650, description="Days predictions are kept.")] = 365
    logs_retention_days: Annotated[int, Field(ge=1, le=3650, description="Days run logs are kept.")] = 90
    event_hub_partitions: Annotated[int, Field(ge=1, le=32, description="Event Hub partitions.")] = 4
    event_hub_retention_days: Annotated[int, Field(ge=1, le=7, description="Event Hub message retention.")] = 1
    streaming_units: Annotated[int, Field(ge=1, le=120, description="Stream Analytics streaming units.")] = 1
    protect_data: Annotated[bool, Field(description="Protect storage and Event Hubs from `pulumi destroy`.")] = False
    subnet_id: Annotated[
        str | None, Field(description="Subnet for the pool; when set, nodes get no public IP addresses.")
    ] = None
    tags: Annotated[dict[str, str], Field(description="Tags added to every resource.")] = Field(default_factory=dict)

    @field_validator("window_minutes")
    @classmethod
    def _window_tiles_hour(cls, value: int) -> int:
        if 60 % value:
            raise ValueError(f"must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60), got {value}")
        return value

    @field_validator("subnet_id")
    @classmethod
    def _subnet_is_a_resource_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(
            r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/virtualNetworks/[^/]+/subnets/[^/]+",
            value,
        ):
            raise ValueError(
                "must be a subnet resource id (/subscriptions/.../virtualNetworks/<vnet>/subnets/<subnet>)"
            )
        return value

    @model_validator(mode="after")
    def _nodes_in_order(self) -> PlatformConfig:
        if self.min_nodes > self.max_nodes:
            raise ValueError(f"minNodes ({self.min_nodes}) must not exceed maxNodes ({self.max_nodes})")
        return self

    @property
    def autoscale(self) -> AutoscaleSpec:
        return AutoscaleSpec(
            min_nodes=self.min_nodes,
            max_nodes=self.max_nodes,
            task_slots_per_node=self.task_slots_per_node,
            lookback_minutes=max(self.autoscale_interval_minutes, 10),
            spot=self.spot_nodes,
        )

    @property
    def aggregation(self) -> AggregationSpec:
        return AggregationSpec(
            window=timedelta(minutes=self.window_minutes), late_tolerance=timedelta(seconds=self.late_tolerance_seconds)
        )


def _bounds(field: FieldInfo) -> tuple[Any, Any]:
    """The declared (ge, le) of a numeric key, None where it has none."""
    low = next((m.ge for m in field.metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in field.metadata if isinstance(m, annotated_types.Le)), None)
    return low, high


def _allowed(alias: str) -> str:
    """The allowed range or form of a key, from its declaration: 'allowed 1..300', or its description."""
    field = next((f for name, f in PlatformConfig.model_fields.items() if to_camel(name) == alias), None)
    if field is None:
        return ""
    low, high = _bounds(field)
    if low is not None and high is not None:
        return f" (allowed {low}..{high})"
    return f" ({field.description})" if field.description else ""


def _describe(error: dict[str, Any]) -> str:
    if not error["loc"]:
        return f"{NAMESPACE} config: {error['msg'].removeprefix('Value error, ')}"
    alias = str(error["loc"][0])
    key = f"{NAMESPACE}:{'.'.join(str(part) for part in error['loc'])}"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (see the configuration reference in README.md)"
    return f"{key}: {error['msg'].removeprefix('Value error, ')}{_allowed(alias)}"


def parse_config(raw: dict[str, Any]) -> PlatformConfig:
    """Validate ``{camelCaseKey: value}``; raise ConfigError naming every bad key."""
    try:
        return PlatformConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]  # type: ignore[arg-type]
        raise ConfigError("invalid stack configuration:\n  " + "\n  ".join(lines)) from None


def raw_stack_config(all_config: dict[str, str]) -> dict[str, Any]:
    """The ``batchscoring:*`` keys of Pulumi's config, JSON values decoded (Pulumi hands them over as text)."""
    prefix = f"{NAMESPACE}:"
    raw: dict[str, Any] = {}
    for key, text in all_config.items():
        if key.startswith(prefix):
            try:
                raw[key.removeprefix(prefix)] = json.loads(text)
            except json.JSONDecodeError:
                raw[key.removeprefix(prefix)] = text
    return raw


def load_config() -> PlatformConfig:
    """The current stack's config (Pulumi passes it in the environment of the program)."""
    from pulumi.runtime.config import get_config_env

    return parse_config(raw_stack_config(get_config_env()))


def reference_table() -> str:
    """The README's configuration reference, generated from the model (a test keeps them equal)."""
    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for name, field in PlatformConfig.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "(none)" if default is None else json.dumps(default) if not isinstance(default, str) else default
        low, high = _bounds(field)
        pattern = next((m.pattern for m in field.metadata if getattr(m, "pattern", None)), None)
        annotation = str(field.annotation)
        allowed = (
            f"{low}..{high}"
            if low is not None and high is not None
            else f"`{pattern}`"
            if pattern
            else " / ".join(annotation.split("[", 1)[1].rstrip("]").replace("'", "").split(", "))
            if "Literal" in annotation
            else "true / false"
            if field.annotation is bool
            else ""
        )
        rows.append(f"| `{NAMESPACE}:{to_camel(name)}` | `{shown}` | {allowed} | {field.description or ''} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(reference_table())
