"""Typed, validated stack configuration, read once from ``Pulumi.<stack>.yaml``.

Keys live under the ``batchscoring`` namespace in camelCase (``batchscoring:maxNodes``). Every
invalid or unknown key is reported at once, with its name and the allowed range, before any
resource is declared; so are the rules that tie several keys together (``minNodes <= maxNodes``,
the settle time), checked on the raw values so that they never wait for the other errors to be fixed.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import annotated_types
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo

from infra.autoscale import AutoscaleSpec
from infra.windows_zones import WINDOWS_ZONE_OF, WINDOWS_ZONES
from workloads.capacity.sizing import (
    DEFAULT_MARGIN,
    PREMIUM_PROCESSING_UNITS,
    STREAMING_UNITS_PER_PARTITION,
    SU_PLANNING_EVENTS_PER_SECOND,
    VALID_STREAMING_UNITS,
    FleetLoad,
    Needs,
    Sizing,
    SizingError,
    max_partitions,
    max_retention_days,
    memory_gb_for,
    needs_of,
    processing_units_step,
    size_for,
    streaming_units_step,
)
from workloads.common.aggregates import AggregationSpec
from workloads.common.manifest import DEFAULT_TASK_INPUT_MIB
from workloads.common.shards import DEFAULT_SHARD_COUNT, MAX_SHARD_COUNT

NAMESPACE = "batchscoring"
VM_SIZE = re.compile(r"^Standard_[A-Z][A-Za-z0-9_-]*$")
LOCATION = re.compile(r"^[a-z][a-z0-9]{2,30}$")
# A dotted Python path (module.Class): what skops' `trusted=` takes. No commas, so a list of them
# travels safely as one comma-separated environment variable.
CIDR = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})/(\d{1,2})$")
DOTTED_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
HTTPS_URL = re.compile(r"^https://[^\s]+$")

# How long after its watermark passes a window Stream Analytics can take to have that window's rows in
# the `aggregates` blob. What Microsoft documents (learn.microsoft.com):
# - "Understand time handling in Azure Stream Analytics" (azure/stream-analytics/stream-analytics-time-handling):
#   per input partition, the watermark is the largest event time seen minus the out-of-order tolerance
#   while events arrive, and the estimated arrival time minus the late-arrival tolerance when none do.
#   A window is emitted once the watermark passes its end, so with idle partitions an hour's last
#   window closes up to lateToleranceSeconds after the hour (the job's out-of-order tolerance is
#   min(late tolerance, 599 s), see infra/ingestion.py, so it never adds to that).
# - "Configuring event ordering policies" (azure/stream-analytics/event-ordering): events later than
#   the late-arrival tolerance are dropped or have their time adjusted to arrival time minus the
#   tolerance (this job drops them, see infra/ingestion.py); either way none reaches a window that
#   was already emitted.
# - "Outputs from Azure Stream Analytics" (azure/stream-analytics/stream-analytics-define-outputs),
#   "Parquet output batching window properties": timeWindow, "the maximum wait time per batch. After
#   this time, the batch is written to the output even if the minimum rows requirement is not met.
#   The default value is 1 minute" (maximum 2 hours). infra/ingestion.py keeps that default (a test
#   checks it sets no timeWindow).
# So: 1 minute of documented batching plus margin for processing, write retries and throttling.
OUTPUT_DELAY_MINUTES = 5

# The stream job's blob output is partitioned by each row's folder, the hour of its window end and its device's shard
# (custom field partitioning, see infra/stream_job.py). "Azure Stream Analytics custom blob output partitioning"
# (learn.microsoft.com/azure/stream-analytics/stream-analytics-custom-path-patterns-blob-storage-output), Limitations:
# "When an input stream consists of records with a partition key cardinality under 8,000, the records are appended to
# existing blobs ... If the cardinality is over 8,000, there's no guarantee existing blobs will be written to"; the
# blob output page adds that a new blob is then "created per partition key". The docs do not say over which span of
# time the cardinality counts. What the job writes at once is one key per shard of each hour its output holds: windows
# are emitted in event-time order as the watermark passes their end, late events are dropped (infra/ingestion.py), so
# an output batch holds the hour being finished and, across the hour boundary, the next one: 2 x shardCount keys.
# Bounding that by 8,000 keeps the job inside the documented regime; nothing depends on appends (Parquet output writes
# a new file per batch anyway, and readers read every blob of a folder).
ASA_PARTITION_KEY_LIMIT = 8000
HOURS_WRITTEN_AT_ONCE = 2
MAX_STREAM_SHARD_COUNT = min(MAX_SHARD_COUNT, ASA_PARTITION_KEY_LIMIT // HOURS_WRITTEN_AT_ONCE)
# Stream Analytics SU V1 steps (see PlatformConfig._streaming_units_step), up to the key's bound: VALID_STREAMING_UNITS,
# imported from workloads/capacity/sizing.py, which sizes the job from the fleet with the same list.
# Event Hubs retention a stack with protectData keeps at least: a stopped job (outputErrorPolicy, a bad row, an outage)
# must be noticed (alerts within minutes, but a weekend can pass before someone acts) and recovered before the readings
# it has not aggregated expire; 3 days cover a weekend. Standard keeps at most 7 days, Premium 90 (sizing.py).
PROTECTED_MIN_RETENTION_DAYS = 3


class ConfigError(ValueError):
    """Raised with one line per invalid key, e.g. ``batchscoring:maxNodes: ...``."""


TrustedType = Annotated[str, StringConstraints(pattern=DOTTED_PATH.pattern, max_length=200)]
# A family the trainer knows by name (``workloads.training.families.FAMILIES``, kept equal by a test) or the dotted
# type path of a user's own estimator: what the run logs name a scored pair's family by (``family_of``).
MODEL_FAMILIES = ("ocsvm", "iforest", "lof", "elliptic")
MODEL_FAMILY = re.compile(rf"^(?:{'|'.join(MODEL_FAMILIES)}|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)$")


class PlatformConfig(BaseModel):
    # Validated by alias (camelCase) only: `max_nodes` in a stack file is an unknown key, never a silent
    # synonym. Python code builds the model from camelCase too (`model_validate({"maxNodes": 8})`) and
    # reads it by field name (`config.max_nodes`).
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_alias=True, validate_by_name=False, extra="forbid", frozen=True
    )

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
    dedicated_fallback_nodes: Annotated[
        int,
        Field(
            ge=0,
            le=300,
            description="spotNodes: up to this many dedicated nodes stand in for Spot nodes preempted or never "
            "allocated (Spot quota 0, no capacity) once tasks have waited a look-back; needs dedicated core quota.",
        ),
    ] = 0
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
    schedule_minute: Annotated[
        int,
        Field(
            ge=0,
            le=59,
            description="Minute past the hour the run starts; after latenessMinutes, so the last hour has settled.",
        ),
    ] = 20
    time_zone: Annotated[
        str,
        Field(
            min_length=1,
            max_length=64,
            description="Windows time zone id (e.g. W. Europe Standard Time) of a Day schedule, which runs at "
            "00:scheduleMinute; Minute and Hour schedules run on UTC hours.",
        ),
    ] = "UTC"
    task_input_mib: Annotated[
        int,
        Field(
            ge=1,
            le=4096,
            description="A shard folder with more MiB of aggregates in an hour is split into slices, a Batch "
            "task each; size shardCount so that this rarely happens.",
        ),
    ] = DEFAULT_TASK_INPUT_MIB
    shard_count: Annotated[
        int,
        Field(
            ge=1,
            le=MAX_STREAM_SHARD_COUNT,
            description="Shards the fleet is split into by a hash of the device id: the stream job writes each "
            "hour's rows into one folder per shard, a Batch task scores each, and each has one model pack. About "
            "pairs / 1000; the trainer reads the same count (SCORING_SHARD_COUNT).",
        ),
    ] = DEFAULT_SHARD_COUNT
    lateness_minutes: Annotated[
        int,
        Field(
            ge=0,
            le=180,
            description="Settle time after an hour ends before it counts as complete; must cover "
            "lateToleranceSeconds plus the stream job's output delay.",
        ),
    ] = 15
    reconcile_hours: Annotated[
        int,
        Field(
            ge=1,
            le=168,
            description="How many recent hours each scheduled run reconciles: scores hours never scored, "
            "re-scores hours whose aggregates changed; must cover the schedule's period.",
        ),
    ] = 24
    trusted_types: Annotated[
        list[TrustedType],
        Field(
            max_length=64,
            description="Extra types skops may load, as dotted Python paths, e.g. sklearn.tree._tree.Tree for "
            "IsolationForest.",
        ),
    ] = Field(default_factory=list)
    sklearn_version_policy: Annotated[
        Literal["exact", "minor", "major", "any"],
        Field(
            description="How much of a model's recorded scikit-learn version must equal the scorer image's: a model "
            "outside it is refused per pair (version_mismatch); see README, Upgrading scikit-learn across a fleet.",
        ),
    ] = "minor"
    model_family: Annotated[
        str,
        StringConstraints(pattern=MODEL_FAMILY.pattern, max_length=200),
        Field(
            description="The model family the fleet is expected to use (ocsvm, iforest, lof, elliptic, or your own "
            "estimator's type path, e.g. my_pkg.detectors.MyDetector): the hourly report counts the pairs scored by "
            "another; scoring always follows each model's own metadata.",
        ),
    ] = "ocsvm"
    train_on_pool: Annotated[
        bool,
        Field(
            description="Let training run on the Batch pool (trainer submit --backend batch): the pool's identity "
            "gets Storage Blob Data Contributor on models instead of Reader. Every task on the pool can use that "
            "identity, so scoring tasks could then write models too (README, Training on the pool)."
        ),
    ] = False
    task_max_retries: Annotated[int, Field(ge=0, le=10, description="Retries of a failed Batch task.")] = 2
    task_max_wall_minutes: Annotated[int, Field(ge=1, le=1440, description="Wall-clock limit of a Batch task.")] = 30
    aggregates_retention_days: Annotated[int, Field(ge=1, le=3650, description="Days aggregates are kept.")] = 30
    predictions_retention_days: Annotated[int, Field(ge=1, le=3650, description="Days predictions are kept.")] = 365
    logs_retention_days: Annotated[int, Field(ge=1, le=3650, description="Days run logs are kept.")] = 90
    pairs: Annotated[
        int | None,
        Field(
            ge=1,
            le=100_000_000,
            description="Device/sensor pairs ingestion is sized for (workloads/capacity/sizing.py); or set devices; "
            "unset with devices unset: 1000.",
        ),
    ] = None
    devices: Annotated[
        int | None,
        Field(ge=1, le=100_000_000, description="Instead of pairs: devices, each with sensorsPerDevice sensors."),
    ] = None
    sensors_per_device: Annotated[int, Field(ge=1, le=1000, description="Sensors (pairs) per device.")] = 1
    reading_interval_seconds: Annotated[
        float, Field(ge=0.1, le=86400, description="Seconds between two readings of a sensor.")
    ] = 10.0
    readings_per_message: Annotated[
        int,
        Field(
            ge=1,
            le=1000,
            description="Readings a device message carries: 1, or sensorsPerDevice for one message per device and "
            "timestamp (divides Event Hubs and Stream Analytics events).",
        ),
    ] = 1
    bytes_per_reading: Annotated[
        int, Field(ge=1, le=65536, description="JSON bytes of one reading inside a message (sizing assumption).")
    ] = 100
    sizing_margin: Annotated[
        float, Field(ge=1, le=10, description="Headroom the sizing applies to every load figure.")
    ] = DEFAULT_MARGIN
    streaming_unit_events_per_second: Annotated[
        float,
        Field(
            ge=1,
            le=1_000_000,
            description="Input events/s one streaming unit is planned to carry (undocumented for our query: a "
            "planning figure; check SU% utilization after deploying).",
        ),
    ] = SU_PLANNING_EVENTS_PER_SECOND
    event_hubs_tier: Annotated[
        Literal["Standard", "Premium"] | None,
        Field(description="Event Hubs tier; unset: from the sizing (Standard while 40 TUs carry the load)."),
    ] = None
    event_hubs_throughput_units: Annotated[
        int | None, Field(ge=1, le=40, description="Standard: base throughput units; unset: from the sizing.")
    ] = None
    event_hubs_max_throughput_units: Annotated[
        int | None,
        Field(ge=1, le=40, description="Standard: auto-inflate maximum; must carry the load; unset: from the sizing."),
    ] = None
    event_hubs_processing_units: Annotated[
        int | None,
        Field(ge=1, le=16, description="Premium: processing units (1, 2, 4, 8, 16); unset: from the sizing."),
    ] = None
    event_hub_partitions: Annotated[
        int | None,
        Field(
            ge=1,
            le=100,
            description="Event Hub partitions (Standard: at most 32; fixed once created); unset: from the sizing.",
        ),
    ] = None
    event_hub_retention_days: Annotated[
        int | None,
        Field(
            ge=1,
            le=90,
            description="Event Hub message retention (Standard: at most 7, Premium 90; protectData: at least 3); "
            "unset: 7 with protectData (Standard), else 1.",
        ),
    ] = None
    streaming_units: Annotated[
        int | None,
        Field(
            ge=1,
            le=120,
            description="Stream Analytics streaming units (SU V1): 1, 3, 6 or a multiple of 6; unset: from the sizing.",
        ),
    ] = None
    submitter_memory_gb: Annotated[
        float | None,
        Field(ge=1, le=16, description="Memory of the submitter's container (GB); unset: from the sizing."),
    ] = None
    protect_data: Annotated[
        bool,
        Field(
            description="Protect storage and Event Hubs: Pulumi's protect against `pulumi destroy`, and Azure "
            "CanNotDelete locks against deletion by anyone."
        ),
    ] = False
    storage_redundancy: Annotated[
        Literal["LRS", "ZRS", "GRS", "GZRS", "RAGRS", "RAGZRS"],
        Field(description="Storage replication: ZRS survives a zone, GZRS also a region (Standard_<value> SKU)."),
    ] = "LRS"
    soft_delete_days: Annotated[
        int,
        Field(
            ge=0,
            le=365,
            description="Days deleted or overwritten blobs and deleted containers stay restorable (0: off).",
        ),
    ] = 7
    blob_versioning: Annotated[
        bool,
        Field(
            description="Keep every model's previous versions; previous versions in the other containers expire "
            "after softDeleteDays.",
        ),
    ] = False
    pool_image: Annotated[
        str,
        Field(
            pattern=r"^[A-Za-z0-9._-]+:[A-Za-z0-9._-]+:[A-Za-z0-9._-]+:[A-Za-z0-9._-]+$",
            description="Batch node image publisher:offer:sku:version; must support containers.",
        ),
    ] = "microsoft-dsvm:ubuntu-hpc:2404:latest"
    node_agent_sku: Annotated[
        str, Field(pattern=r"^batch\.node\.[a-z0-9. -]+$", description="Batch node agent matching poolImage.")
    ] = "batch.node.ubuntu 24.04"
    ephemeral_os_disk: Annotated[
        bool,
        Field(
            description="OS disk, and Docker's images with it, on the VM's local cache disk (Batch's only ephemeral "
            "placement); needs a vmSize with a cache disk larger than the image (az vm list-skus: CachedDiskBytes).",
        ),
    ] = False
    subnet_id: Annotated[
        str | None,
        Field(description="Existing subnet for the pool; when set, nodes get no public IP addresses."),
    ] = None
    private_network: Annotated[
        bool,
        Field(
            description="A VNet for pool and submitter, storage/Event Hubs/Batch firewalls default-deny, "
            "private endpoints (see README, Network modes).",
        ),
    ] = False
    vnet_address_space: Annotated[
        str, Field(pattern=CIDR.pattern, description="privateNetwork: the VNet's address space, a /16 to /24.")
    ] = "10.40.0.0/16"
    registry_sku: Annotated[
        Literal["Basic", "Standard", "Premium"],
        Field(description="Container registry tier; Premium is needed for a private endpoint and a firewall."),
    ] = "Standard"
    admin_ip_ranges: Annotated[
        list[Annotated[str, StringConstraints(pattern=CIDR.pattern)]],
        Field(
            max_length=100,
            description="privateNetwork: public CIDRs of deployers and operators let through the storage, "
            "registry and Event Hubs firewalls.",
        ),
    ] = Field(default_factory=list)
    ingest_ip_ranges: Annotated[
        list[Annotated[str, StringConstraints(pattern=CIDR.pattern)]],
        Field(max_length=100, description="privateNetwork: public CIDRs of the devices' senders, for Event Hubs."),
    ] = Field(default_factory=list)
    telemetry: Annotated[
        bool,
        Field(
            description="Declare Application Insights (on the workspace) and let the submitter and scorer send "
            "traces and metrics to it through OpenTelemetry; off: nothing is sent."
        ),
    ] = False
    log_retention_days: Annotated[
        int, Field(ge=30, le=730, description="Days the Log Analytics workspace keeps logs and metrics.")
    ] = 30
    alert_emails: Annotated[
        list[Annotated[str, StringConstraints(pattern=EMAIL.pattern)]],
        Field(max_length=20, description="E-mail receivers of every alert (the action group)."),
    ] = Field(default_factory=list)
    alert_webhooks: Annotated[
        list[Annotated[str, StringConstraints(pattern=HTTPS_URL.pattern)]],
        Field(max_length=10, description="HTTPS webhook receivers of every alert (common alert schema)."),
    ] = Field(default_factory=list)
    require_alert_receivers: Annotated[
        bool | None,
        Field(
            description="Refuse to deploy without an alertEmails or alertWebhooks receiver; unset: required "
            "when protectData is (a stack whose data matters is one whose alerts must reach someone).",
        ),
    ] = None
    hour_deadline_minutes: Annotated[
        int,
        Field(
            ge=1,
            le=1440,
            description="Alert when an hour is not scored this many minutes after it ends; must be after "
            "scheduleMinute, when the run that scores it starts.",
        ),
    ] = 45
    watermark_alert_minutes: Annotated[
        int, Field(ge=1, le=1440, description="Alert when the stream job's output watermark lags this much.")
    ] = 15
    tags: Annotated[dict[str, str], Field(description="Tags added to every resource.")] = Field(default_factory=dict)

    @field_validator("shard_count", mode="before")
    @classmethod
    def _shards_fit_the_stream_output(cls, value: Any) -> Any:
        """Said before the bound itself is checked, so that the error says why (see MAX_STREAM_SHARD_COUNT)."""
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_STREAM_SHARD_COUNT:
            raise ValueError(
                f"{value} shards would have the stream job write up to {HOURS_WRITTEN_AT_ONCE * value} partition "
                f"folders at once ({HOURS_WRITTEN_AT_ONCE} hours x shardCount, around each hour boundary), over the "
                f"{ASA_PARTITION_KEY_LIMIT:,} distinct partition keys Stream Analytics' custom blob partitioning "
                f"documents; use at most {MAX_STREAM_SHARD_COUNT} shards (then rebuild the model packs: "
                "`trainer pack --shard-count <n>`)"
            )
        return value

    @field_validator("time_zone")
    @classmethod
    def _windows_time_zone(cls, value: str) -> str:
        """Logic Apps' Recurrence timeZone takes Windows time zone ids, e.g. "Pacific Standard Time" (the Recurrence
        trigger's schema reference); a tzdata name such as Europe/Berlin is refused when the workflow is saved."""
        if value in WINDOWS_ZONES:
            return value
        raise ValueError(_time_zone_hint(value))

    @field_validator("window_minutes")
    @classmethod
    def _window_tiles_hour(cls, value: int) -> int:
        if 60 % value:
            raise ValueError(f"must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60), got {value}")
        return value

    @field_validator("streaming_units")
    @classmethod
    def _streaming_units_step(cls, value: int | None) -> int | None:
        """The job is declared with sku ``Standard`` and an integer ``streamingUnits`` (infra/ingestion.py, API
        2020-03-01), the SU V1 scale: "Valid values for SUs per job are 1, 3, 6, and up in increments of 6"
        (learn.microsoft.com/azure/stream-analytics/stream-analytics-streaming-unit-consumption; today's page: "Jobs
        may run with 1 and 3 SUs as well ... Scaling occurs in increments of 6 beyond 6 SU jobs, to 12, 18, 24 and
        beyond"). SU V2's 1/3, 2/3, 1, 2, ... are a portal notation the same page maps onto other integers in the
        REST API; the program does not declare them."""
        if value is not None and value not in VALID_STREAMING_UNITS:
            below = max(v for v in VALID_STREAMING_UNITS if v <= value)
            above = min((v for v in VALID_STREAMING_UNITS if v >= value), default=below)
            raise ValueError(
                f"{value} is not a valid streaming-unit count (1, 3, 6, 12, 18, ...): use {below} or {above}"
            )
        return value

    @field_validator("vnet_address_space")
    @classmethod
    def _address_space_fits_the_subnets(cls, value: str) -> str:
        """Four equal subnets are cut from it (infra/network.py); Azure reserves 5 addresses in each."""
        try:
            network = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"must be a network address with its prefix, e.g. 10.40.0.0/16 ({exc})") from None
        if not 16 <= network.prefixlen <= 24:
            raise ValueError(f"prefix must be /16 to /24, got /{network.prefixlen}")
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
    def _keys_agree(self) -> PlatformConfig:
        # The same rules parse_config checks on the raw values; here for models built without it.
        # (pydantic runs this only when every field is valid, hence parse_config's own pass.)
        if lines := cross_field_errors({name: getattr(self, name) for name in type(self).model_fields}):
            raise ValueError("; ".join(lines))
        return self

    @property
    def autoscale(self) -> AutoscaleSpec:
        return AutoscaleSpec(
            min_nodes=self.min_nodes,
            max_nodes=self.max_nodes,
            task_slots_per_node=self.task_slots_per_node,
            lookback_minutes=max(self.autoscale_interval_minutes, 10),
            spot=self.spot_nodes,
            dedicated_fallback_nodes=self.dedicated_fallback_nodes,
        )

    @property
    def fleet_load(self) -> FleetLoad:
        """The load ingestion is sized for (see _fleet_load)."""
        return _fleet_load(
            self.pairs,
            self.devices,
            self.sensors_per_device,
            self.reading_interval_seconds,
            self.readings_per_message,
            self.bytes_per_reading,
        )

    @property
    def sizing(self) -> Sizing:
        """What the stack deploys for ingestion: ``size_for`` the fleet, each override in its place (parse_config has
        refused overrides that cannot carry the load)."""
        return _sizing({name: getattr(self, name) for name in SIZING_INPUTS})

    @property
    def event_hub_retention(self) -> int:
        """Days Event Hubs keeps readings: the key, or 7 with protectData (Standard's maximum), else 1."""
        return _retention(self.event_hub_retention_days, self.protect_data)

    @property
    def aggregation(self) -> AggregationSpec:
        return AggregationSpec(
            window=timedelta(minutes=self.window_minutes), late_tolerance=timedelta(seconds=self.late_tolerance_seconds)
        )


def _time_zone_hint(value: str) -> str:
    """Why a time zone is refused, with the Windows id to use where one is known."""
    windows_by_lower = {name.lower(): name for name in WINDOWS_ZONES}
    iana_by_lower = {name.lower(): name for name in WINDOWS_ZONE_OF}
    if value.lower() in windows_by_lower:
        return f"Windows time zone ids are matched exactly: use {windows_by_lower[value.lower()]!r}"
    if value.lower() in iana_by_lower:
        return (
            f"{value} is a tzdata (IANA) name; Logic Apps take Windows time zone ids: use "
            f"{WINDOWS_ZONE_OF[iana_by_lower[value.lower()]]!r}"
        )
    close = difflib.get_close_matches(value.lower(), list(windows_by_lower), n=1, cutoff=0.8)
    hint = f"did you mean {windows_by_lower[close[0]]!r}?" if close else "e.g. 'UTC' or 'W. Europe Standard Time'"
    return f"{value!r} is not a Windows time zone id, which Logic Apps take: {hint}"


# --- rules across keys: plain functions of field values, each returning its error or None ----------------------

# Minutes between two runs of the trigger, per unit of scheduleInterval (infra/scheduler.py Recurrence).
STEP_MINUTES = {"Minute": 1, "Hour": 60, "Day": 24 * 60}


def _first_scoring_delay(frequency: str, interval: int, minute: int, lateness_minutes: int) -> int:
    """The longest time, over all hours, from an hour's end to the start of the first run that finds it complete.

    Runs fall at ``minute`` + k x step minutes past a UTC midnight (infra/scheduler.py); hour j ends at 60 j and is
    complete from 60 j + lateness (workloads/common/windows.py, last_complete_hour). The first run then waits
    (minute - lateness - 60 j) mod step; over all j that takes the values (minute - lateness) mod g + i g, g being
    gcd(60, step), so the longest wait is step - g + (minute - lateness) mod g."""
    step = STEP_MINUTES[frequency] * interval
    g = math.gcd(60, step)
    return lateness_minutes + step - g + (minute - lateness_minutes) % g


def _observes_daylight_saving(windows_zone: str) -> bool:
    """Whether a Windows time zone's offset changes within this year (unknown: assume it does)."""
    try:
        zone = ZoneInfo(WINDOWS_ZONES[windows_zone])
    except (KeyError, ZoneInfoNotFoundError):
        return True
    year = datetime.now(UTC).year
    return len({zone.utcoffset(datetime(year, month, 1)) for month in range(1, 13)}) > 1


def _run_after_the_settle_time(schedule_frequency: str, schedule_minute: int, lateness_minutes: int) -> str | None:
    """An Hour or Day run at scheduleMinute finds the hour that just ended complete only from latenessMinutes past
    the hour (workloads/common/windows.py, last_complete_hour): earlier, every run scores the hour before it, and each
    hour waits a whole period more (and the hour-not-scored alert fires every hour)."""
    if schedule_frequency == "Minute":  # runs every few minutes: the first after the settle time scores the hour
        return None
    earliest = lateness_minutes % 60
    if schedule_minute >= earliest:
        return None
    return (
        f"{NAMESPACE}:scheduleMinute: {schedule_minute} is before the settle time "
        f"(latenessMinutes {lateness_minutes}): each run would find the hour that just ended not yet complete "
        "and score it a whole "
        f"{schedule_frequency.lower()} later; use {earliest}..59"
    )


def _reconcile_covers_the_period(
    reconcile_hours: int, schedule_frequency: str, schedule_interval: int, time_zone: str
) -> str | None:
    """Each run reconciles the reconcileHours hours up to the last complete one; between two runs that hour moves on
    by the time between them, so hours beyond the window would never be scored. A Day schedule runs at 00:minute in
    its time zone, so across a daylight-saving change two runs are 25 hours apart."""
    step = STEP_MINUTES[schedule_frequency] * schedule_interval
    gap = math.ceil(step / 60)
    dst = schedule_frequency == "Day" and _observes_daylight_saving(time_zone)
    needed = gap + 1 if dst else gap
    if reconcile_hours >= needed:
        return None
    unit = schedule_frequency.lower() + ("s" if schedule_interval > 1 else "")
    every = f"every {schedule_interval} {unit}" if schedule_interval > 1 else f"every {unit}"
    why = f" ({gap + 1} across a daylight-saving change in {time_zone})" if dst else ""
    never = f"; {gap - reconcile_hours} of every {gap} hours would never be scored" if gap > reconcile_hours else ""
    return (
        f"{NAMESPACE}:reconcileHours: {reconcile_hours} does not cover the schedule's period: it runs {every}, "
        f"{gap} hours apart{why}{never}; use at least {needed}"
    )


def _same_region(location: str, provider_location: str | None) -> str | None:
    """The program places every resource in batchscoring:location (the resource group's region; the others take the
    group's); azure-native:location is only the provider's default for a resource that names none. Two different
    regions would leave one of the settings silently unused."""
    if provider_location is None or re.sub(r"\s+", "", provider_location).lower() == location:
        return None
    return (
        f"{NAMESPACE}:location: {location} is not azure-native:location ({provider_location}): every resource goes "
        f"to {NAMESPACE}:location, so set both to the same region"
    )


def _nodes_in_order(min_nodes: int, max_nodes: int) -> str | None:
    if min_nodes > max_nodes:
        return f"{NAMESPACE}:minNodes: {min_nodes} must not exceed maxNodes ({max_nodes})"
    return None


def _fallback_for_spot(dedicated_fallback_nodes: int, spot_nodes: bool, max_nodes: int) -> str | None:
    """Dedicated nodes stand in for missing Spot nodes (infra/autoscale.py): only in a Spot pool, at most maxNodes."""
    if dedicated_fallback_nodes and not spot_nodes:
        return (
            f"{NAMESPACE}:dedicatedFallbackNodes: {dedicated_fallback_nodes} applies to Spot pools only; set "
            "spotNodes: true, or remove it (a dedicated pool already uses dedicated nodes)"
        )
    if dedicated_fallback_nodes > max_nodes:
        return f"{NAMESPACE}:dedicatedFallbackNodes: {dedicated_fallback_nodes} must not exceed maxNodes ({max_nodes})"
    return None


def _settle_covers_stream_delay(lateness_minutes: int, late_tolerance_seconds: int) -> str | None:
    """An hour counts as complete only when its last window can have been written (see OUTPUT_DELAY_MINUTES)."""
    needed = late_tolerance_seconds + 60 * OUTPUT_DELAY_MINUTES
    if lateness_minutes * 60 >= needed:
        return None
    minimum = math.ceil(needed / 60)
    high = _bounds(PlatformConfig.model_fields["lateness_minutes"])[1]
    hint = (
        f"use at least {minimum}"
        if minimum <= high
        else f"lower lateToleranceSeconds to at most {high * 60 - 60 * OUTPUT_DELAY_MINUTES}"
    )
    return (
        f"{NAMESPACE}:latenessMinutes: {lateness_minutes} minutes do not cover lateToleranceSeconds "
        f"({late_tolerance_seconds} s) plus the stream job's output delay ({OUTPUT_DELAY_MINUTES} min): {hint}"
    )


def _one_network_mode(private_network: bool, subnet_id: str | None) -> str | None:
    if private_network and subnet_id:
        return (
            f"{NAMESPACE}:subnetId: not used with privateNetwork, which creates the pool's subnet itself: "
            "remove one of them"
        )
    return None


def _private_registry_reachable_by_deployer(
    private_network: bool, registry_sku: str, admin_ip_ranges: list[str]
) -> str | None:
    """A Premium registry in private mode denies every public address but these, and `pulumi up` pushes the images
    from the deployer's machine: with none listed, the deployment would fail half-way at the first push."""
    if private_network and registry_sku == "Premium" and not admin_ip_ranges:
        return (
            f"{NAMESPACE}:adminIpRanges: privateNetwork with registrySku Premium denies the registry to every "
            "public address but these, and `pulumi up` pushes the images from yours: list your public CIDR"
        )
    return None


def _deadline_after_the_run(
    hour_deadline_minutes: int,
    schedule_minute: int,
    schedule_frequency: str,
    schedule_interval: int,
    lateness_minutes: int,
) -> str | None:
    """The run that scores an hour starts up to _first_scoring_delay after the hour's end (scheduleMinute past the
    next hour for an hourly schedule): a deadline before it fires for hours that are on time. (A Day schedule in a
    time zone with daylight saving waits an hour more once a year; that one alert is left to fire.) Not said when
    the run starts before the settle time: that rule names the key to change."""
    if _run_after_the_settle_time(schedule_frequency, schedule_minute, lateness_minutes):
        return None
    delay = _first_scoring_delay(schedule_frequency, schedule_interval, schedule_minute, lateness_minutes)
    if hour_deadline_minutes > delay:
        return None
    if schedule_frequency == "Hour" and schedule_interval == 1 and delay <= schedule_minute:
        return (
            f"{NAMESPACE}:hourDeadlineMinutes: {hour_deadline_minutes} is not after scheduleMinute "
            f"({schedule_minute}), when the run that scores the hour starts: every hour would alert"
        )
    high = _bounds(PlatformConfig.model_fields["hour_deadline_minutes"])[1]
    hint = f"use more than {delay}" if delay < high else f"no deadline up to {high} can wait that long: run more often"
    return (
        f"{NAMESPACE}:hourDeadlineMinutes: {hour_deadline_minutes} is not after the {delay} minutes an hour can wait "
        f"past its end for the run that scores it ({schedule_frequency} schedule, interval {schedule_interval}, "
        f"scheduleMinute {schedule_minute}): on-time hours would alert; {hint}"
    )


def _alerts_reach_someone(
    require_alert_receivers: bool | None, protect_data: bool, alert_emails: list[str], alert_webhooks: list[str]
) -> str | None:
    """A stack that must be watched (requireAlertReceivers, by default protectData) needs a receiver: an action
    group without one is valid to Azure, and every alert of the stack would then reach nobody."""
    required = protect_data if require_alert_receivers is None else require_alert_receivers
    if required and not alert_emails and not alert_webhooks:
        why = "requireAlertReceivers is true" if require_alert_receivers else "protectData is true"
        return (
            f"{NAMESPACE}:alertEmails: no alert receiver, and {why}: list at least one address in alertEmails "
            "(or an HTTPS URL in alertWebhooks), or set requireAlertReceivers: false to deploy unwatched"
        )
    return None


# --- ingestion sized from the fleet (workloads/capacity/sizing.py) ---------------------------------------------------

DEFAULT_PAIRS = 1000  # a development fleet: the sizing then declares what the stack declared before it existed
LOAD_INPUTS = (
    "pairs",
    "devices",
    "sensors_per_device",
    "reading_interval_seconds",
    "readings_per_message",
    "bytes_per_reading",
)
SIZING_INPUTS = (
    *LOAD_INPUTS,
    "sizing_margin",
    "streaming_unit_events_per_second",
    "event_hubs_tier",
    "event_hubs_throughput_units",
    "event_hubs_max_throughput_units",
    "event_hubs_processing_units",
    "event_hub_partitions",
    "streaming_units",
    "submitter_memory_gb",
)


def _fleet_load(
    pairs: int | None,
    devices: int | None,
    sensors_per_device: int,
    reading_interval_seconds: float,
    readings_per_message: int,
    bytes_per_reading: int,
) -> FleetLoad:
    """The declared load: ``devices`` x ``sensorsPerDevice`` pairs, or ``pairs``, or DEFAULT_PAIRS."""
    total = devices * sensors_per_device if devices is not None else pairs if pairs is not None else DEFAULT_PAIRS
    return FleetLoad(total, sensors_per_device, reading_interval_seconds, readings_per_message, bytes_per_reading)


def _forced_tier(values: Mapping[str, Any]) -> Literal["Standard", "Premium"] | None:
    """The tier the overrides ask for: eventHubsTier, else the tier whose capacity key is set, else None (sized)."""
    tier: Literal["Standard", "Premium"] | None = values["event_hubs_tier"]
    if tier is None and values["event_hubs_processing_units"] is not None:
        return "Premium"
    if tier is None and (
        values["event_hubs_throughput_units"] is not None or values["event_hubs_max_throughput_units"] is not None
    ):
        return "Standard"
    return tier


def _sizing(values: Mapping[str, Any]) -> Sizing:
    """``size_for`` the declared load with every override in its place; raises SizingError when the load fits
    nothing (parse_config reports that, and every override that cannot carry the load, before this is used)."""
    load = _fleet_load(*(values[name] for name in LOAD_INPUTS))
    sized = size_for(
        load,
        values["sizing_margin"],
        tier=_forced_tier(values),
        su_events_per_second=values["streaming_unit_events_per_second"],
    )
    overrides: dict[str, Any] = {}
    if sized.event_hubs_tier == "Standard":
        base, most = values["event_hubs_throughput_units"], values["event_hubs_max_throughput_units"]
        base = base if base is not None else min(sized.throughput_units, most or sized.throughput_units)
        overrides |= {"throughput_units": base, "max_throughput_units": most or max(sized.max_throughput_units, base)}
    elif values["event_hubs_processing_units"] is not None:
        overrides["processing_units"] = values["event_hubs_processing_units"]
    for key, field in (
        ("event_hub_partitions", "partitions"),
        ("streaming_units", "streaming_units"),
        ("submitter_memory_gb", "submitter_memory_gb"),
    ):
        if values[key] is not None:
            overrides[field] = values[key]
    notes = tuple(f"override: {field} {value}" for field, value in overrides.items() if getattr(sized, field) != value)
    return dataclasses.replace(sized, **overrides, notes=sized.notes + notes)


def _retention(event_hub_retention_days: int | None, protect_data: bool) -> int:
    if event_hub_retention_days is not None:
        return event_hub_retention_days
    return 7 if protect_data else 1


def _load_declared_once(pairs: int | None, devices: int | None) -> str | None:
    if pairs is not None and devices is not None:
        return (
            f"{NAMESPACE}:pairs: {pairs} and devices ({devices}) both set: the load is pairs, or devices x "
            "sensorsPerDevice; remove one"
        )
    return None


def _message_fits_the_device(readings_per_message: int, sensors_per_device: int) -> str | None:
    if readings_per_message > sensors_per_device:
        return (
            f"{NAMESPACE}:readingsPerMessage: {readings_per_message} exceeds sensorsPerDevice ({sensors_per_device}): "
            "a message carries readings of one device and timestamp"
        )
    return None


def _overrides_carry_the_load(*args: Any) -> str | None:
    """Every sizing override, checked against what the declared load needs (margin included), with the numbers."""
    values = dict(zip(SIZING_INPUTS, args, strict=True))
    if _load_declared_once(values["pairs"], values["devices"]) or _message_fits_the_device(
        values["readings_per_message"], values["sensors_per_device"]
    ):
        return None  # said by its own rule
    try:
        sizing = _sizing(values)
    except SizingError as exc:
        return f"{NAMESPACE}:{'eventHubsTier' if _forced_tier(values) is not None else 'pairs'}: {exc}"
    load = _fleet_load(*(values[name] for name in LOAD_INPUTS))
    need = needs_of(load, values["sizing_margin"], su_events_per_second=values["streaming_unit_events_per_second"])
    what = (
        f"{load.pairs:,} pairs every {load.reading_interval_seconds:g} s ({load.events_per_second:,.0f} events/s, "
        f"{load.ingress_bytes_per_second / 1e6:,.2f} MB/s) with sizingMargin {values['sizing_margin']:g}"
    )
    lines = [
        *_event_hubs_capacity_lines(values, sizing, need, what),
        *_stream_lines(values, sizing, need, what),
    ]
    memory, needed_gb = values["submitter_memory_gb"], memory_gb_for(need.submitter_mib)
    if memory is not None and memory < needed_gb:
        lines.append(
            f"{NAMESPACE}:submitterMemoryGb: {memory:g} is below the {needed_gb:g} GB the submitter needs for "
            f"{load.pairs:,} pairs ({need.submitter_mib:,.0f} MiB: measured peak and planning growth, times "
            f"sizingMargin {values['sizing_margin']:g})"
        )
    return "\n  ".join(lines) or None


def _event_hubs_capacity_lines(values: Mapping[str, Any], sizing: Sizing, need: Needs, what: str) -> list[str]:
    """The tier's capacity overrides: keys of the other tier, too little capacity, a base above the maximum."""
    lines: list[str] = []
    tier = sizing.event_hubs_tier
    standard_keys = ("event_hubs_throughput_units", "event_hubs_max_throughput_units")
    for name in (*standard_keys, "event_hubs_processing_units"):
        wrong = "Premium" if name in standard_keys else "Standard"
        if values[name] is not None and tier == wrong:
            lines.append(
                f"{NAMESPACE}:{to_camel(name)}: {values[name]} does not apply to an Event Hubs {tier} namespace"
            )
    if tier == "Standard":
        needed = math.ceil(need.throughput_units)
        if sizing.max_throughput_units < needed:
            lines.append(
                f"{NAMESPACE}:eventHubsMaxThroughputUnits: {sizing.max_throughput_units} cannot carry the load: {what} "
                f"needs {needed} throughput units (1 TU: 1 MB/s or 1,000 events/s)"
            )
        if sizing.throughput_units > sizing.max_throughput_units:
            lines.append(
                f"{NAMESPACE}:eventHubsThroughputUnits: {sizing.throughput_units} exceeds eventHubsMaxThroughputUnits "
                f"({sizing.max_throughput_units}), which auto-inflate scales up to"
            )
    elif (pus := values["event_hubs_processing_units"]) is not None:
        if pus not in PREMIUM_PROCESSING_UNITS:
            lines.append(f"{NAMESPACE}:eventHubsProcessingUnits: {pus} is not sold: use 1, 2, 4, 8 or 16")
        elif pus < need.processing_units:
            lines.append(
                f"{NAMESPACE}:eventHubsProcessingUnits: {pus} cannot carry the load: {what} needs "
                f"{processing_units_step(need.processing_units)} processing units ({need.processing_units:.2f} at "
                "the approximate planning figures, 5,000 events/s or 5 MB/s per PU)"
            )
    return lines


def _stream_lines(values: Mapping[str, Any], sizing: Sizing, need: Needs, what: str) -> list[str]:
    """Streaming units and partitions below what the load needs, or partitions over the tier's maximum."""
    lines: list[str] = []
    if (units := values["streaming_units"]) is not None and units < need.streaming_units:
        lines.append(
            f"{NAMESPACE}:streamingUnits: {units} cannot carry the load: {what} needs "
            f"{streaming_units_step(need.streaming_units)} ({need.streaming_units:.2f} at "
            f"{values['streaming_unit_events_per_second']:,.0f} events/s (streamingUnitEventsPerSecond) or 1 MB/s "
            "per SU)"
        )
    tier = sizing.event_hubs_tier
    needed = math.ceil(max(need.partitions, sizing.streaming_units / STREAMING_UNITS_PER_PARTITION))
    if (partitions := values["event_hub_partitions"]) is not None:
        if partitions > max_partitions(tier):
            lines.append(
                f"{NAMESPACE}:eventHubPartitions: {partitions} is over Event Hubs {tier}'s {max_partitions(tier)} "
                "partitions per event hub"
            )
        elif partitions < needed:
            lines.append(
                f"{NAMESPACE}:eventHubPartitions: {partitions} cannot carry the load: {what} needs {needed} "
                f"(1 MB/s or 1,000 events/s per partition; {sizing.streaming_units} streaming units use at most "
                f"{STREAMING_UNITS_PER_PARTITION} per partition)"
            )
    return lines


def _retention_covers_recovery(event_hub_retention_days: int | None, protect_data: bool, *args: Any) -> str | None:
    """Readings the job has not aggregated live only in Event Hubs: retention must outlast noticing and recovering a
    stopped job (PROTECTED_MIN_RETENTION_DAYS with protectData), and fit the tier (Standard 7 days, Premium 90)."""
    days = _retention(event_hub_retention_days, protect_data)
    if protect_data and days < PROTECTED_MIN_RETENTION_DAYS:
        return (
            f"{NAMESPACE}:eventHubRetentionDays: {days} day(s) with protectData: a stopped stream job must be noticed "
            f"and recovered before its unread readings expire; use at least {PROTECTED_MIN_RETENTION_DAYS}"
        )
    try:
        tier = _sizing(dict(zip(SIZING_INPUTS, args, strict=True))).event_hubs_tier
    except (SizingError, ValueError):
        return None  # said by _overrides_carry_the_load
    if days > max_retention_days(tier):
        return (
            f"{NAMESPACE}:eventHubRetentionDays: {days} is over Event Hubs {tier}'s maximum of "
            f"{max_retention_days(tier)} days"
        )
    return None


def _protected_partitions_pinned(event_hub_partitions: int | None, protect_data: bool, *args: Any) -> str | None:
    """A Standard event hub's partition count is fixed once it exists: "For other tiers, you can only specify the
    partition count at the time of creating an event hub" (learn.microsoft.com/azure/event-hubs/
    configure-event-hub-properties); "Dynamic additions of partitions is available only in premium and dedicated
    tiers" (.../event-hubs/dynamically-add-partitions). A sized count follows the declared fleet, so a stack whose
    readings matter (protectData) pins it, and a fleet that grows cannot change it by accident."""
    if not protect_data or event_hub_partitions is not None:
        return None
    try:
        sized = _sizing(dict(zip(SIZING_INPUTS, args, strict=True))).partitions
    except (SizingError, ValueError):
        return None  # said by _overrides_carry_the_load
    return (
        f"{NAMESPACE}:eventHubPartitions must be set with protectData (the load needs {sized} now): a Standard event "
        "hub's partition count cannot change once it exists, so it must not follow the fleet's sizing"
    )


CROSS_FIELD_RULES: tuple[tuple[tuple[str, ...], Callable[..., str | None]], ...] = (
    (("pairs", "devices"), _load_declared_once),
    (("readings_per_message", "sensors_per_device"), _message_fits_the_device),
    (SIZING_INPUTS, _overrides_carry_the_load),
    (("event_hub_retention_days", "protect_data", *SIZING_INPUTS), _retention_covers_recovery),
    (("event_hub_partitions", "protect_data", *SIZING_INPUTS), _protected_partitions_pinned),
    (("min_nodes", "max_nodes"), _nodes_in_order),
    (("dedicated_fallback_nodes", "spot_nodes", "max_nodes"), _fallback_for_spot),
    (("lateness_minutes", "late_tolerance_seconds"), _settle_covers_stream_delay),
    (("private_network", "subnet_id"), _one_network_mode),
    (("private_network", "registry_sku", "admin_ip_ranges"), _private_registry_reachable_by_deployer),
    (
        ("hour_deadline_minutes", "schedule_minute", "schedule_frequency", "schedule_interval", "lateness_minutes"),
        _deadline_after_the_run,
    ),
    (("schedule_frequency", "schedule_minute", "lateness_minutes"), _run_after_the_settle_time),
    (("reconcile_hours", "schedule_frequency", "schedule_interval", "time_zone"), _reconcile_covers_the_period),
    (
        ("require_alert_receivers", "protect_data", "alert_emails", "alert_webhooks"),
        _alerts_reach_someone,
    ),
)


def cross_field_errors(values: Mapping[str, Any], invalid: frozenset[str] = frozenset()) -> list[str]:
    """One line per broken rule; a rule with an input in ``invalid`` (field names) is skipped, not guessed."""
    lines: list[str] = []
    for inputs, rule in CROSS_FIELD_RULES:
        if invalid.isdisjoint(inputs) and (line := rule(*(values[name] for name in inputs))):
            lines.append(line)
    return lines


def _raw_values(raw: Mapping[str, Any], invalid: frozenset[str]) -> dict[str, Any]:
    """Each valid field's value as the model would hold it: the raw value coerced, or the default when not given."""
    values: dict[str, Any] = {}
    for name, field in PlatformConfig.model_fields.items():
        if name in invalid:
            continue
        alias = to_camel(name)
        values[name] = (
            TypeAdapter[Any](field.annotation or Any).validate_python(raw[alias])
            if alias in raw
            else field.get_default(call_default_factory=True)
        )
    return values


# --- error lines ------------------------------------------------------------------------------------------------

_FIELD_BY_ALIAS = {to_camel(name): name for name in PlatformConfig.model_fields}


def _bounds(field: FieldInfo) -> tuple[Any, Any]:
    """The declared (ge, le) of a numeric key, None where it has none."""
    low = next((m.ge for m in field.metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in field.metadata if isinstance(m, annotated_types.Le)), None)
    return low, high


def _allowed(alias: str) -> str:
    """The allowed range or form of a key, from its declaration: 'allowed 1..300', or its description."""
    name = _FIELD_BY_ALIAS.get(alias)
    if name is None:
        return ""
    field = PlatformConfig.model_fields[name]
    low, high = _bounds(field)
    if low is not None and high is not None:
        return f" (allowed {low}..{high})"
    return f" ({field.description})" if field.description else ""


def _unknown_key_hint(key: str) -> str:
    """'did you mean maxNodes?' for a snake_case spelling or a near miss of a known key."""
    if key in _FIELD_BY_ALIAS.values():  # a field name, i.e. the snake_case spelling of a key
        return f"did you mean {to_camel(key)}?"
    by_lower = {alias.lower(): alias for alias in _FIELD_BY_ALIAS}
    close = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.8)
    if close:
        return f"did you mean {by_lower[close[0]]}?"
    return "see the configuration reference in README.md"


def _describe(error: Mapping[str, Any]) -> str:
    if not error["loc"]:
        return f"{NAMESPACE} config: {str(error['msg']).removeprefix('Value error, ')}"
    alias = str(error["loc"][0])
    key = f"{NAMESPACE}:{'.'.join(str(part) for part in error['loc'])}"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key; {_unknown_key_hint(alias)}"
    return f"{key}: {str(error['msg']).removeprefix('Value error, ')}{_allowed(alias)}"


def parse_config(raw: dict[str, Any], provider_location: str | None = None) -> PlatformConfig:
    """Validate ``{camelCaseKey: value}``; raise ConfigError naming every bad key and every broken rule at once.

    ``provider_location``: the stack's ``azure-native:location``, when it sets one (see parse_stack_config)."""
    try:
        config = PlatformConfig.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
    else:
        if (line := _same_region(config.location, provider_location)) is None:
            return config
        raise ConfigError(f"invalid stack configuration:\n  {line}")
    # The model validator's rule lines are recomputed below from the raw values, so they appear whether or
    # not other keys are invalid too; every other error is kept as pydantic reports it.
    lines = [_describe(e) for e in errors if e["loc"] or e["type"] != "value_error"]
    if isinstance(raw, Mapping):
        # A key is invalid when its value failed, or when it was given under its snake_case name.
        invalid = frozenset(
            name
            for e in errors
            if e["loc"]
            for name in (_FIELD_BY_ALIAS.get(str(e["loc"][0])), str(e["loc"][0]))
            if name in PlatformConfig.model_fields
        )
        values = _raw_values(raw, invalid)
        lines += cross_field_errors(values, invalid)
        if "location" not in invalid and (line := _same_region(values["location"], provider_location)):
            lines.append(line)
    raise ConfigError("invalid stack configuration:\n  " + "\n  ".join(lines))


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


PROVIDER_LOCATION = "azure-native:location"


def parse_stack_config(all_config: Mapping[str, str]) -> PlatformConfig:
    """Pulumi's whole config for a stack (every namespace, values as text): the ``batchscoring`` keys, checked
    together with the provider's ``azure-native:location``."""
    provider_location = all_config.get(PROVIDER_LOCATION)
    return parse_config(raw_stack_config(dict(all_config)), provider_location)


def load_config() -> PlatformConfig:
    """The current stack's config (Pulumi passes it in the environment of the program)."""
    from pulumi.runtime.config import get_config_env

    return parse_stack_config(get_config_env())


def _item_pattern(field: FieldInfo) -> str | None:
    """The pattern every item of a list key must match, e.g. trustedTypes."""
    for item in get_args(field.annotation):
        pattern = next((getattr(m, "pattern", None) for m in getattr(item, "__metadata__", ())), None)
        if pattern:
            return str(pattern)
    return None


def _literal_choices(annotation: Any) -> list[str]:
    """The values of a Literal key, also inside ``Literal[...] | None``."""
    if get_origin(annotation) is Literal:
        return [str(value) for value in get_args(annotation)]
    return [choice for arg in get_args(annotation) for choice in _literal_choices(arg)]


def reference_table() -> str:
    """The README's configuration reference, generated from the model (a test keeps them equal)."""
    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for name, field in PlatformConfig.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "(none)" if default is None else json.dumps(default) if not isinstance(default, str) else default
        low, high = _bounds(field)
        pattern = next((m.pattern for m in field.metadata if getattr(m, "pattern", None)), None)
        item_pattern = _item_pattern(field)
        allowed = (
            f"{low}..{high}"
            if low is not None and high is not None
            else f"`{pattern}`"
            if pattern
            else f"list of `{item_pattern}`"
            if item_pattern
            else " / ".join(choices)
            if (choices := _literal_choices(field.annotation))
            else "true / false"
            if field.annotation in (bool, bool | None)
            else ""
        )
        cells = (f"`{NAMESPACE}:{to_camel(name)}`", f"`{shown}`", allowed, field.description or "")
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")  # a | would end the cell
    return "\n".join(rows)


if __name__ == "__main__":
    print(reference_table())
