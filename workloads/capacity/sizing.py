"""Ingestion sized from the fleet: Event Hubs tier and capacity, partitions, streaming units, submitter memory.

One pure function, ``size_for``, turns the load a stack declares (pairs, sensors per device, reading interval, readings
per message) into what ``infra/`` deploys, so that ingestion is built for the same fleet as scoring instead of a fixed
1 TU. ``infra/config.py`` uses it for every key left unset and refuses an override that cannot carry the load; the cost
planner prices its result. No Pulumi here: plain numbers in, plain numbers out.

Every limit below is Microsoft's documented figure, cited where it is declared; where the documentation gives none
(events/s per Premium processing unit, events/s per streaming unit for a query like ours) the figure is a stated
planning assumption, kept as a module constant and a keyword argument, and ``margin`` (default 1.5) sits on top of
every load figure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

HOURS_PER_MONTH = 730.0  # Azure's billing month

Tier = Literal["Standard", "Premium"]

# --- Event Hubs ---------------------------------------------------------------------------------------------------
# "Scaling with Event Hubs" (https://learn.microsoft.com/azure/event-hubs/event-hubs-scalability), Throughput units:
# "Ingress: Up to 1 MB per second or 1,000 events per second (whichever comes first)"; beyond it ingress is throttled.
TU_INGRESS_BYTES_PER_SECOND = 1_000_000
TU_INGRESS_EVENTS_PER_SECOND = 1_000
# "Event Hubs quotas and limits" (https://learn.microsoft.com/azure/event-hubs/event-hubs-quotas), Basic vs Standard vs
# Premium vs Dedicated: "Maximum TUs or PUs or CUs | 40 TUs | 40 TUs | 16 PUs"; "Number of partitions per event hub |
# 32 | 32 | 100 per event hub, but there's a limit of 200 per PU at the namespace level"; "Maximum retention period of
# event data | 1 day | 7 days | 90 days". (The ARM reference's "0 to 20 throughput units" for sku.capacity and
# maximumThroughputUnits predates the 40-TU self-serve limit of the quotas page, which is the one used here.)
STANDARD_MAX_THROUGHPUT_UNITS = 40
STANDARD_MAX_PARTITIONS = 32
STANDARD_MAX_RETENTION_DAYS = 7
PREMIUM_MAX_PARTITIONS = 100
PREMIUM_MAX_RETENTION_DAYS = 90
# "Overview of Event Hubs Premium" (https://learn.microsoft.com/azure/event-hubs/event-hubs-premium-overview): "You can
# purchase 1, 2, 4, 8, and 16 processing units (PUs) for each namespace", and "the achievable throughput isn't set by a
# throttle like it is in the Standard tier ... The effective ingest and stream throughput per PU will depend on various
# factors". The page's FAQ once said "Approximately one Premium Unit can offer core capacity of ~5-10 MB/s ingress ...
# given that we have sufficient enough partitions" (MicrosoftDocs/azure-docs, includes/event-hubs-premium-faq.md,
# 2021); today's FAQ gives no figure. APPROXIMATE, then: the low end, 5 MB/s, is planned per PU, and events/s per PU
# are not documented at all: planned as the TU's ratio (1,000 events per MB) at that low end, 5,000 events/s. Measure
# with a load test before relying on a Premium namespace near these figures.
PREMIUM_PROCESSING_UNITS = (1, 2, 4, 8, 16)
PU_PLANNING_BYTES_PER_SECOND = 5_000_000
PU_PLANNING_EVENTS_PER_SECOND = 5_000
# Partitions: "we recommend users to maintain a maximum throughput of 1 MB/s per partition and choose the partition
# count to match the maximum throughput you want to handle" ("Event Hubs features", Number of partitions,
# https://learn.microsoft.com/azure/event-hubs/event-hubs-features#number-of-partitions). The count cannot change after
# creation below Premium, so the sizing rounds up (to a power of two, which also divides evenly among SU nodes) and
# never goes below MIN_PARTITIONS (the stack's former default: a little parallelism for a small fleet that grows).
PARTITION_PLANNING_BYTES_PER_SECOND = 1_000_000
MIN_PARTITIONS = 4

# --- Stream Analytics ---------------------------------------------------------------------------------------------
# SU V1 steps: "Valid values for SUs per job are 1, 3, 6, and up in increments of 6"
# (https://learn.microsoft.com/azure/stream-analytics/stream-analytics-streaming-unit-consumption); 120 is the bound the
# stack's streamingUnits key allows (infra/config.py uses this list).
VALID_STREAMING_UNITS = (1, 3, *range(6, 121, 6))
# "Use query parallelization in Azure Stream Analytics"
# (https://learn.microsoft.com/azure/stream-analytics/stream-analytics-parallelization), Calculate the max streaming
# units for a job: "All non-partitioned steps together can scale up to six streaming units (SUs) ... you can add 6 SUs
# for each partition in a partitioned step": SUs past 6 need at least SUs / 6 input partitions (and a partitioned
# query).
STREAMING_UNITS_PER_PARTITION = 6
UNPARTITIONED_MAX_STREAMING_UNITS = 6
# Throughput per SU is documented only as guidance that "depends" on the query: "For each streaming unit, Azure Stream
# Analytics can process roughly 1 MB/s of input" (stream-analytics-streaming-unit-consumption, Input partition count,
# 2019 text), and the parallelization page's measured examples: a pass-through query with a JavaScript UDF on 1 KB
# events needed "1, 6, 12 SUs" for "1, 5 and 10k events/s" (Achieving higher throughputs at scale). Our query is a
# stateful windowed GROUP BY per device, whose memory grows with the devices per window (SU% utilization, same page):
# planned at 1,000 input events/s and 1 MB/s per SU, with ``margin`` on top; the events figure is a keyword argument
# (config: streamingUnitEventsPerSecond). Check SU% utilization (< 80 %) and backlogged input events after deploying.
SU_PLANNING_EVENTS_PER_SECOND = 1_000.0
SU_PLANNING_BYTES_PER_SECOND = 1_000_000.0

# --- the submitter's container ------------------------------------------------------------------------------------
# Measured (README, Performance): the whole submitter reconciling 100,000 pairs with the local backend peaked at
# 403 MiB ("At fleet scale", code 732f1a6); planning alone grows from 147 MiB at 100,000 pairs to 180 MiB at a million
# with 60 blobs per shard folder ("Planning a million pairs"; 144 MiB are the imports), i.e. about 36 MiB per million
# pairs. The need is the measured peak plus that growth beyond 100,000 pairs, times ``margin``.
SUBMITTER_MEASURED_PEAK_MIB = 403.0
SUBMITTER_MEASURED_AT_PAIRS = 100_000
SUBMITTER_GROWTH_MIB_PER_MILLION_PAIRS = 36.0
# "Container groups in Azure Container Instances", Minimum and maximum allocation: "Allocate a minimum of 1 CPU and
# 1 GB of memory to a container group" (https://learn.microsoft.com/azure/container-instances/container-instances-
# container-groups); memoryInGB is a number (REST ResourceRequests), requested here in 0.1 GB steps, at most 16 GB (the
# common Linux maximum of "Resource availability by region", https://learn.microsoft.com/azure/container-instances/
# container-instances-region-availability; some regions allow less).
ACI_MIN_MEMORY_GB = 1.0
ACI_MEMORY_STEP_GB = 0.1
ACI_MAX_MEMORY_GB = 16.0
MIB = 1024 * 1024
GB = 1_000_000_000  # ACI's GB, read as decimal: the smaller unit, so the request never falls short

DEFAULT_MARGIN = 1.5


class SizingError(ValueError):
    """The declared load exceeds what any sizing this stack can declare carries; the message has the numbers."""


@dataclass(frozen=True)
class FleetLoad:
    """The load ingestion is sized for.

    ``bytes_per_reading``: the JSON size of one reading inside a message (device id, sensor id, timestamp, value and
    keys: about 100 bytes for the simulator's messages), an assumption to override with the devices' real payload.
    A message with several readings is counted as the sum of its readings (its shared envelope is ignored: small).
    """

    pairs: int  # device/sensor pairs
    sensors_per_device: int = 1
    reading_interval_seconds: float = 10.0
    readings_per_message: int = (
        1  # 1: one reading per message; sensors_per_device: one message per device and timestamp
    )
    bytes_per_reading: int = 100  # JSON size of one reading inside a message (see the docstring)

    def __post_init__(self) -> None:
        if self.pairs < 1 or self.sensors_per_device < 1 or self.readings_per_message < 1 or self.bytes_per_reading < 1:
            raise ValueError(f"a fleet load needs positive counts, got {self}")
        if not self.reading_interval_seconds > 0:
            raise ValueError(f"reading_interval_seconds must be positive, got {self.reading_interval_seconds}")
        if self.readings_per_message > self.sensors_per_device:
            raise ValueError(
                f"readings_per_message {self.readings_per_message} exceeds sensors_per_device "
                f"{self.sensors_per_device}: a message carries readings of one device and timestamp"
            )

    @property
    def devices(self) -> int:
        return math.ceil(self.pairs / self.sensors_per_device)

    @property
    def messages_per_device(self) -> int:
        """Messages a device sends per reading interval: its sensors, readings_per_message to a message."""
        return math.ceil(self.sensors_per_device / self.readings_per_message)

    @property
    def events_per_second(self) -> float:
        """Event Hubs events (messages) per second: what TUs, billing and the stream job's input count."""
        return self.devices * self.messages_per_device / self.reading_interval_seconds

    @property
    def readings_per_second(self) -> float:
        return self.pairs / self.reading_interval_seconds

    @property
    def ingress_bytes_per_second(self) -> float:
        return self.readings_per_second * self.bytes_per_reading

    @property
    def events_per_month(self) -> float:
        return self.events_per_second * 3600 * HOURS_PER_MONTH


@dataclass(frozen=True)
class Needs:
    """What the load needs, margin included, before rounding to what can be bought; the refusals quote these."""

    margin: float
    events_per_second: float  # with margin
    bytes_per_second: float  # with margin
    throughput_units: float  # Standard TUs (either TU limit)
    processing_units: float  # Premium PUs at the planning figures
    partitions: float  # by the 1 MB/s-per-partition recommendation
    streaming_units: float  # by the SU planning figures
    submitter_mib: float


@dataclass(frozen=True)
class Sizing:
    event_hubs_tier: str  # "Standard" | "Premium"
    throughput_units: int  # Standard: base TUs; 0 for Premium
    max_throughput_units: int  # Standard auto-inflate maximum; 0 for Premium
    processing_units: int  # Premium PUs; 0 for Standard
    partitions: int
    streaming_units: int  # a valid SU V1 step
    submitter_memory_gb: float
    notes: tuple[str, ...]  # one line per limit applied, with the numbers


def needs_of(
    load: FleetLoad,
    margin: float = DEFAULT_MARGIN,
    *,
    su_events_per_second: float = SU_PLANNING_EVENTS_PER_SECOND,
) -> Needs:
    """The load's requirements in each unit, margin included (fractions: rounding is ``size_for``'s)."""
    if margin < 1:
        raise ValueError(f"margin must be at least 1, got {margin}")
    if not su_events_per_second > 0:
        raise ValueError(f"su_events_per_second must be positive, got {su_events_per_second}")
    events = load.events_per_second * margin
    ingress = load.ingress_bytes_per_second * margin
    beyond = max(0, load.pairs - SUBMITTER_MEASURED_AT_PAIRS) / 1_000_000
    return Needs(
        margin=margin,
        events_per_second=events,
        bytes_per_second=ingress,
        throughput_units=max(events / TU_INGRESS_EVENTS_PER_SECOND, ingress / TU_INGRESS_BYTES_PER_SECOND),
        processing_units=max(events / PU_PLANNING_EVENTS_PER_SECOND, ingress / PU_PLANNING_BYTES_PER_SECOND),
        # A partition carries about what a TU does (1 MB/s or 1,000 events/s): partitions follow events as well
        # as bytes, balanced with the throughput units (event-hubs-scalability).
        partitions=max(ingress / PARTITION_PLANNING_BYTES_PER_SECOND, events / TU_INGRESS_EVENTS_PER_SECOND),
        # The query's work is per reading: after CROSS APPLY a message of 4 readings is 4 rows to aggregate, so
        # streaming units follow readings/s, not messages/s.
        streaming_units=max(
            load.readings_per_second * margin / su_events_per_second, ingress / SU_PLANNING_BYTES_PER_SECOND
        ),
        submitter_mib=(SUBMITTER_MEASURED_PEAK_MIB + SUBMITTER_GROWTH_MIB_PER_MILLION_PAIRS * beyond) * margin,
    )


def streaming_units_step(needed: float) -> int | None:
    """The smallest valid SU V1 count that is at least ``needed``; None above the largest."""
    return next((units for units in VALID_STREAMING_UNITS if units >= needed), None)


def processing_units_step(needed: float) -> int | None:
    """The smallest PU count Premium sells that is at least ``needed``; None above 16."""
    return next((units for units in PREMIUM_PROCESSING_UNITS if units >= needed), None)


def partitions_for(needed: float, tier: str) -> int:
    """At least ``needed`` and MIN_PARTITIONS, rounded up to a power of two, at most the tier's maximum."""
    cap = STANDARD_MAX_PARTITIONS if tier == "Standard" else PREMIUM_MAX_PARTITIONS
    count = max(MIN_PARTITIONS, math.ceil(needed))
    return min(cap, 1 << (count - 1).bit_length())


def memory_gb_for(mib: float) -> float:
    """``mib`` as an ACI memory request: decimal GB rounded up to 0.1, at least 1 GB."""
    steps = math.ceil(round(mib * MIB / GB / ACI_MEMORY_STEP_GB, 6))
    return max(ACI_MIN_MEMORY_GB, round(steps * ACI_MEMORY_STEP_GB, 1))


def max_partitions(tier: str) -> int:
    return STANDARD_MAX_PARTITIONS if tier == "Standard" else PREMIUM_MAX_PARTITIONS


def max_retention_days(tier: str) -> int:
    return STANDARD_MAX_RETENTION_DAYS if tier == "Standard" else PREMIUM_MAX_RETENTION_DAYS


def _describe(load: FleetLoad) -> str:
    shape = (
        "one reading per message"
        if load.readings_per_message == 1
        else f"{load.readings_per_message} readings per message"
    )
    return (
        f"{load.pairs:,} pairs ({load.devices:,} devices x {load.sensors_per_device} "
        f"sensor{'s' if load.sensors_per_device > 1 else ''}, {shape}) every "
        f"{load.reading_interval_seconds:g} s: {load.events_per_second:,.0f} events/s, "
        f"{load.ingress_bytes_per_second / 1e6:,.2f} MB/s"
    )


def size_for(
    load: FleetLoad,
    margin: float = DEFAULT_MARGIN,
    *,
    tier: Tier | None = None,
    su_events_per_second: float = SU_PLANNING_EVENTS_PER_SECOND,
) -> Sizing:
    """The smallest documented sizing that carries ``load`` times ``margin``; SizingError when none does.

    Standard is chosen while its 40 TUs carry the load (cheaper, and throttled at known figures); the base capacity
    carries the load with margin, and auto-inflate may double it, up to 40, for a catch-up after an outage (it only
    scales up; ``pulumi up --refresh`` sets the base again). Above that, Premium at the planning figures. ``tier``
    forces one (an override)."""
    need = needs_of(load, margin, su_events_per_second=su_events_per_second)
    notes = [
        f"load: {_describe(load)}; margin {margin:g}: {need.events_per_second:,.0f} events/s, "
        f"{need.bytes_per_second / 1e6:,.2f} MB/s"
    ]
    fits_standard = need.throughput_units <= STANDARD_MAX_THROUGHPUT_UNITS
    chosen: Tier = tier or ("Standard" if fits_standard else "Premium")
    throughput_units = max_throughput_units = processing_units = 0
    if chosen == "Standard":
        if not fits_standard:
            raise SizingError(
                f"{_describe(load)} needs {math.ceil(need.throughput_units)} throughput units with margin {margin:g} "
                f"(1 TU: 1 MB/s or 1,000 events/s), over Standard's {STANDARD_MAX_THROUGHPUT_UNITS}: use Premium, "
                "fewer messages (several readings per message) or a longer interval"
            )
        throughput_units = max(1, math.ceil(need.throughput_units))
        max_throughput_units = min(STANDARD_MAX_THROUGHPUT_UNITS, 2 * throughput_units)
        notes.append(
            f"Event Hubs Standard: {throughput_units} TUs ({need.throughput_units:.2f} needed at 1 MB/s or 1,000 "
            f"events/s per TU), auto-inflate up to {max_throughput_units} (at most {STANDARD_MAX_THROUGHPUT_UNITS})"
        )
    else:
        pus = processing_units_step(need.processing_units)
        if pus is None:
            raise SizingError(
                f"{_describe(load)} needs {need.processing_units:.1f} Premium processing units with margin "
                f"{margin:g} at the planning figures (about {PU_PLANNING_EVENTS_PER_SECOND:,} events/s or "
                f"{PU_PLANNING_BYTES_PER_SECOND / 1e6:g} MB/s per PU, approximate: undocumented beyond ~5-10 MB/s), "
                f"over the {PREMIUM_PROCESSING_UNITS[-1]} PUs a namespace can have, and Standard's "
                f"{STANDARD_MAX_THROUGHPUT_UNITS} TUs carry {STANDARD_MAX_THROUGHPUT_UNITS * 1000:,} events/s: send "
                "one message per device and timestamp (readingsPerMessage), read less often, or split the fleet"
            )
        processing_units = pus
        notes.append(
            f"Event Hubs Premium: {pus} PUs ({need.processing_units:.2f} needed at ~{PU_PLANNING_EVENTS_PER_SECOND:,} "
            f"events/s or ~{PU_PLANNING_BYTES_PER_SECOND / 1e6:g} MB/s per PU: approximate, not documented figures; "
            f"{'over' if not fits_standard else 'instead of'} Standard's {STANDARD_MAX_THROUGHPUT_UNITS} TUs)"
        )
    streaming_units = streaming_units_step(need.streaming_units)
    if streaming_units is None:
        raise SizingError(
            f"{_describe(load)} needs {need.streaming_units:.1f} streaming units with margin {margin:g} at "
            f"{su_events_per_second:,.0f} events/s or 1 MB/s per SU (planning figures), over the "
            f"{VALID_STREAMING_UNITS[-1]} this stack declares: lengthen the reading interval or split the fleet"
        )
    notes.append(
        f"Stream Analytics: {streaming_units} SUs ({need.streaming_units:.2f} needed at {su_events_per_second:,.0f} "
        "events/s or 1 MB/s per SU, planning figures; valid steps 1, 3, 6, 12, ...)"
        + (
            f"; more than {UNPARTITIONED_MAX_STREAMING_UNITS} SUs are used only by a partitioned query"
            if streaming_units > UNPARTITIONED_MAX_STREAMING_UNITS
            else ""
        )
    )
    partitions_needed = max(need.partitions, streaming_units / STREAMING_UNITS_PER_PARTITION)
    cap = max_partitions(chosen)
    if partitions_needed > cap:
        raise SizingError(
            f"{_describe(load)} needs {math.ceil(partitions_needed)} partitions (1 MB/s or 1,000 events/s per "
            f"partition, {STREAMING_UNITS_PER_PARTITION} SUs per partition), over {chosen}'s {cap} per event hub"
        )
    partitions = partitions_for(partitions_needed, chosen)
    notes.append(
        f"partitions: {partitions} ({need.partitions:.2f} needed at 1 MB/s or 1,000 events/s per partition, "
        f"{streaming_units / STREAMING_UNITS_PER_PARTITION:.2f} for {streaming_units} SUs at "
        f"{STREAMING_UNITS_PER_PARTITION} per partition; at least {MIN_PARTITIONS}, a power of two, at most {cap})"
    )
    memory_gb = memory_gb_for(need.submitter_mib)
    if memory_gb > ACI_MAX_MEMORY_GB:
        raise SizingError(
            f"the submitter needs {need.submitter_mib:,.0f} MiB with margin {margin:g}, over ACI's "
            f"{ACI_MAX_MEMORY_GB:g} GB per container group"
        )
    notes.append(
        f"submitter: {memory_gb:g} GB ({need.submitter_mib:,.0f} MiB needed: {SUBMITTER_MEASURED_PEAK_MIB:g} MiB "
        f"measured at {SUBMITTER_MEASURED_AT_PAIRS:,} pairs + {SUBMITTER_GROWTH_MIB_PER_MILLION_PAIRS:g} MiB per "
        f"million pairs beyond, times {margin:g}; ACI minimum {ACI_MIN_MEMORY_GB:g} GB, 0.1 GB steps)"
    )
    return Sizing(
        event_hubs_tier=chosen,
        throughput_units=throughput_units,
        max_throughput_units=max_throughput_units,
        processing_units=processing_units,
        partitions=partitions,
        streaming_units=streaming_units,
        submitter_memory_gb=memory_gb,
        notes=tuple(notes),
    )


SIZING_COLUMNS = (
    "pairs",
    "sensors",
    "readings/msg",
    "events/s",
    "MB/s",
    "tier",
    "TUs (max)",
    "PUs",
    "partitions",
    "SUs",
    "submitter GB",
)


def sizing_row(load: FleetLoad, margin: float = DEFAULT_MARGIN) -> tuple[str, ...]:
    """One table row; a load no sizing carries reads 'does not fit' with the reason in the tier column."""
    head = (
        f"{load.pairs:,}",
        str(load.sensors_per_device),
        str(load.readings_per_message),
        f"{load.events_per_second:,.0f}",
        f"{load.ingress_bytes_per_second / 1e6:,.2f}",
    )
    try:
        sizing = size_for(load, margin)
    except SizingError:
        return (*head, "does not fit", "-", "-", "-", "-", "-")
    standard = sizing.event_hubs_tier == "Standard"
    return (
        *head,
        sizing.event_hubs_tier,
        f"{sizing.throughput_units} ({sizing.max_throughput_units})" if standard else "-",
        "-" if standard else str(sizing.processing_units),
        str(sizing.partitions),
        str(sizing.streaming_units),
        f"{sizing.submitter_memory_gb:g}",
    )


def sizing_table(loads: Iterable[FleetLoad], margin: float = DEFAULT_MARGIN) -> str:
    """A Markdown table of ``size_for`` over ``loads`` (README, the issue's closing note, the cost planner)."""
    rows: Sequence[tuple[str, ...]] = [SIZING_COLUMNS, *(sizing_row(load, margin) for load in loads)]
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---:" for _ in rows[0]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def reference_loads() -> list[FleetLoad]:
    """The issue's fleets: 10k, 100k and 1M pairs every 10 s, one reading per message and one message per device of 4
    sensors."""
    return [
        FleetLoad(pairs, sensors_per_device=sensors, readings_per_message=sensors)
        for pairs in (10_000, 100_000, 1_000_000)
        for sensors in (1, 4)
    ]


if __name__ == "__main__":
    print(sizing_table(reference_loads()))
    for load in reference_loads():
        try:
            print("\n".join(size_for(load).notes))
        except SizingError as exc:
            print(f"refused: {exc}")
        print()
