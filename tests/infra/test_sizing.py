"""Ingestion sized from the fleet: the pure sizing (workloads/capacity/sizing.py), the stack config's overrides and
refusals (infra/config.py), and the resources the program declares from it (Pulumi mocks)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from infra.config import ConfigError, parse_config
from tests.infra.conftest import Deploy
from workloads.capacity.sizing import (
    PREMIUM_PROCESSING_UNITS,
    VALID_STREAMING_UNITS,
    FleetLoad,
    SizingError,
    memory_gb_for,
    partitions_for,
    reference_loads,
    size_for,
    sizing_table,
)

NAMESPACE = "azure-native:eventhub:Namespace"
HUB = "azure-native:eventhub:EventHub"
JOB = "azure-native:streamanalytics:StreamingJob"
GROUP = "azure-native:containerinstance:ContainerGroup"


def brief(load: FleetLoad) -> tuple[Any, ...]:
    sizing = size_for(load)
    return (
        sizing.event_hubs_tier,
        sizing.throughput_units,
        sizing.max_throughput_units,
        sizing.processing_units,
        sizing.partitions,
        sizing.streaming_units,
        sizing.submitter_memory_gb,
    )


# --- the load ----------------------------------------------------------------------------------------------------


def test_a_load_counts_messages_and_bytes() -> None:
    one = FleetLoad(100_000)
    assert one.events_per_second == 10_000 and one.ingress_bytes_per_second == 1_000_000
    assert one.events_per_month == pytest.approx(10_000 * 3600 * 730)  # ~26 billion: the figure
    grouped = FleetLoad(100_000, sensors_per_device=4, readings_per_message=4)
    # One message per device and timestamp: a quarter of the events, the same bytes.
    assert grouped.devices == 25_000 and grouped.events_per_second == 2_500
    assert grouped.ingress_bytes_per_second == one.ingress_bytes_per_second
    halves = FleetLoad(100_000, sensors_per_device=4, readings_per_message=2)
    assert halves.events_per_second == 5_000


@pytest.mark.parametrize(
    "kwargs",
    [{"pairs": 0}, {"pairs": 10, "reading_interval_seconds": 0}, {"pairs": 10, "readings_per_message": 2}],
)
def test_a_load_refuses_impossible_shapes(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FleetLoad(**kwargs)


# --- the sizing table --------------------------------------------------------------------------------------------


def test_the_sizing_table_for_10k_100k_and_1m_pairs() -> None:
    """The issue's closing numbers, every 10 s: one reading per message, and one message per device of 4 sensors."""
    rows = {(load.pairs, load.readings_per_message): load for load in reference_loads()}
    # With the margin 1.5: TUs and partitions need max(MB/s, events/s / 1,000), SUs need readings/s / 1,000.
    # 1,500 events/s = 1,500 readings/s: 1.5 TUs -> 2 (auto-inflate 4), 1.5 SUs -> 3, 1.5 partitions -> 4 (minimum).
    assert brief(rows[10_000, 1]) == ("Standard", 2, 4, 0, 4, 3, 1.0)
    # 375 events/s: 0.375 TUs -> 1 (2), but 1,500 readings/s still need 1.5 SUs -> 3 (the readings, not the messages).
    assert brief(rows[10_000, 4]) == ("Standard", 1, 2, 0, 4, 3, 1.0)
    # 15,000 events/s: 15 TUs (30); 15,000 events/s / 1,000 per partition = 15 -> 16; 15 SUs -> 18 (18 / 6 = 3).
    assert brief(rows[100_000, 1]) == ("Standard", 15, 30, 0, 16, 18, 1.0)
    # 3,750 events/s: 3.75 TUs -> 4 (8) and 3.75 partitions -> 4; 15,000 readings/s: 15 SUs -> 18 (18 / 6 = 3).
    assert brief(rows[100_000, 4]) == ("Standard", 4, 8, 0, 4, 18, 1.0)
    # 100,000 one-reading messages a second (150,000 with the margin) fit neither 40 TUs nor 16 PUs at the planning
    # figure, nor 120 streaming units: refused with the numbers.
    with pytest.raises(SizingError, match=r"needs 30\.0 Premium processing units .* over the 16 PUs"):
        size_for(rows[1_000_000, 1])
    # One message per device of 4 sensors: 37,500 events/s (38 TUs) but still 150,000 readings/s with the margin:
    # 150,000 / 1,000 = 150 SUs, over the 120 the stack declares.
    with pytest.raises(SizingError, match=r"needs 150\.0 streaming units .* over the 120"):
        size_for(rows[1_000_000, 4])
    table = sizing_table(reference_loads())
    assert table.splitlines()[0].startswith("| pairs | sensors | readings/msg | events/s | MB/s | tier |")
    assert "| 100,000 | 1 | 1 | 10,000 | 1.00 | Standard | 15 (30) | - | 16 | 18 | 1 |" in table
    assert "| 1,000,000 | 1 | 1 | 100,000 | 10.00 | does not fit | - | - | - | - | - |" in table
    assert "| 1,000,000 | 4 | 4 | 25,000 | 10.00 | does not fit | - | - | - | - | - |" in table


def test_every_sizing_names_the_limits_it_applied() -> None:
    notes = size_for(FleetLoad(100_000)).notes
    assert notes[0].startswith("load: 100,000 pairs")
    assert any("Event Hubs Standard: 15 TUs" in n and "auto-inflate up to 30" in n for n in notes)
    assert any("Stream Analytics: 18 SUs" in n and "partitioned query" in n for n in notes)
    assert any(n.startswith("partitions: 16") for n in notes)  # 15,000 events/s / 1,000 per partition = 15 -> 16
    assert any(n.startswith("submitter: 1 GB") for n in notes)


# --- every limit's edge ------------------------------------------------------------------------------------------


def test_standard_up_to_32_partitions_then_premium_above_40_throughput_units() -> None:
    # Partitions follow events/s as TUs do, so Standard's 32 partitions per event hub, not its 40 TUs, end it:
    # 21,333 events/s x 1.5 = 31,999.5: 32 TUs and 31.9995 partitions -> 32, Standard's maximum.
    at_limit = FleetLoad(213_330)
    assert size_for(at_limit).event_hubs_tier == "Standard" and size_for(at_limit).throughput_units == 32
    assert size_for(at_limit).partitions == 32
    assert size_for(at_limit).max_throughput_units == 40  # 2 x 32, but auto-inflate never above the tier's maximum
    # One more device: 21,334 x 1.5 = 32,001 events/s needs 33 partitions, over Standard's 32 (40 TUs would carry it).
    with pytest.raises(SizingError, match=r"needs 33 partitions .* over Standard's 32 per event hub"):
        size_for(FleetLoad(213_340))
    assert size_for(FleetLoad(213_340), tier="Premium").partitions == 64  # 33 -> 64, within Premium's 100
    # Past 40 TUs the sizing picks Premium itself: 26,668 events/s x 1.5 = 40,002, 40.002 TUs.
    over = FleetLoad(266_680)
    sizing = size_for(over)
    assert sizing.event_hubs_tier == "Premium" and sizing.throughput_units == sizing.max_throughput_units == 0
    assert sizing.processing_units == 16  # 40,002 events/s / 5,000 per PU: 8.0004 -> 16 (of 1, 2, 4, 8, 16)
    assert sizing.partitions == 64  # 40,002 events/s / 1,000 per partition: 40.002 -> 64
    assert size_for(FleetLoad(266_660), tier="Premium").processing_units == 8  # 39,999 / 5,000: 7.9998 -> 8


def test_throughput_units_count_bytes_too() -> None:
    # 1,000 pairs of 10 KB readings every 10 s: 100 events/s but 1 MB/s, 1.5 MB/s with the margin: 2 TUs.
    assert size_for(FleetLoad(1_000, bytes_per_reading=10_000)).throughput_units == 2


def test_auto_inflate_doubles_the_base_up_to_40() -> None:
    assert size_for(FleetLoad(100_000)).max_throughput_units == 30
    assert size_for(FleetLoad(200_000)).max_throughput_units == 40  # base 30


def test_premium_processing_units_are_the_steps_sold() -> None:
    for pairs in (270_000, 300_000, 500_000):
        assert size_for(FleetLoad(pairs)).processing_units in PREMIUM_PROCESSING_UNITS
    assert size_for(FleetLoad(100_000), tier="Premium").processing_units == 4  # 15,000 / 5,000 = 3 -> 4


def test_a_forced_standard_tier_that_cannot_carry_the_load_is_refused() -> None:
    with pytest.raises(SizingError, match=r"needs 150 throughput units .* over Standard's 40"):
        size_for(FleetLoad(1_000_000), tier="Standard")


def test_streaming_units_are_valid_steps_and_bounded() -> None:
    for pairs in (1_000, 7_000, 30_000, 100_000, 400_000):
        assert size_for(FleetLoad(pairs, sensors_per_device=4, readings_per_message=4)).streaming_units in (
            VALID_STREAMING_UNITS
        )
    # 26,000 readings/s x 1.5 = 39,000 at 325 per SU: 120 SUs, the last step; at 324, 120.4: refused. Four readings
    # per message keep the events at 6,500/s (9,750 with the margin: 10 TUs, 9.75 partitions, 120 / 6 = 20 -> 32).
    grouped = FleetLoad(260_000, sensors_per_device=4, readings_per_message=4)
    assert size_for(grouped, su_events_per_second=325).streaming_units == 120
    with pytest.raises(SizingError, match=r"needs 120\.4 streaming units .* over the 120"):
        size_for(grouped, su_events_per_second=324)


def test_the_streaming_unit_planning_figure_is_configurable() -> None:
    assert size_for(FleetLoad(100_000), su_events_per_second=3_000).streaming_units == 6  # 15,000 / 3,000 = 5
    with pytest.raises(ValueError, match="margin must be at least 1"):
        size_for(FleetLoad(100), margin=0.5)


def test_partitions_follow_the_megabytes_and_the_streaming_units() -> None:
    assert partitions_for(0.1, "Standard") == 4  # never below MIN_PARTITIONS
    assert partitions_for(4.01, "Standard") == 8  # a power of two
    assert partitions_for(33, "Standard") == 32 and partitions_for(70, "Premium") == 100  # the tier's maximum
    # 10 KB readings: 1,000/s = 10 MB/s x 1.5 = 15 partitions at 1 MB/s -> 16 (1,500 events/s need 1.5; 18 SUs, 3).
    assert size_for(FleetLoad(10_000, bytes_per_reading=10_000)).partitions == 16
    # Small messages: 15,000 events/s / 1,000 per partition = 15 -> 16 (1.5 MB/s needs 1.5; 18 SUs need 3).
    assert size_for(FleetLoad(100_000)).partitions == 16
    # Many readings in few messages: the SUs set the partitions (39,000 readings/s / 325 = 120 SUs, 120 / 6 = 20 -> 32;
    # 9,750 events/s need 9.75, 3.9 MB/s 3.9).
    grouped = FleetLoad(260_000, sensors_per_device=4, readings_per_message=4)
    assert size_for(grouped, su_events_per_second=325).partitions == 32


def test_the_submitter_memory_is_measured_need_in_aci_steps() -> None:
    assert memory_gb_for(100) == 1.0  # ACI's 1 GB minimum per container group
    assert memory_gb_for(1_000) == 1.1  # 1.049 GB rounded up to 0.1 GB
    assert memory_gb_for(953.67431640625) == 1.0  # exactly 1 GB needs no more
    # 403 MiB measured + 36 MiB per million pairs beyond 100,000, times 1.5: 653 MiB at a million; 10 M pairs 1.2 GB.
    assert size_for(FleetLoad(10_000_000, 100, 600, 100)).submitter_memory_gb == 1.2


# --- the stack's config: overrides and refusals -------------------------------------------------------------------


def test_unset_keys_come_from_the_sizing_and_a_default_fleet_keeps_the_former_defaults() -> None:
    config = parse_config({})
    sizing = config.sizing
    assert (sizing.event_hubs_tier, sizing.throughput_units, sizing.partitions, sizing.streaming_units) == (
        "Standard",
        1,
        4,
        1,
    )
    assert config.event_hub_retention == 1


def test_devices_times_sensors_is_the_load() -> None:
    config = parse_config({"devices": 25_000, "sensorsPerDevice": 4, "readingsPerMessage": 4})
    assert config.fleet_load.pairs == 100_000 and config.fleet_load.events_per_second == 2_500
    assert config.sizing.streaming_units == 18  # 10,000 readings/s x 1.5 = 15,000 / 1,000 per SU = 15 -> 18


def test_overrides_that_carry_the_load_replace_the_sizing() -> None:
    sizing = parse_config(
        {
            "pairs": 100_000,
            "eventHubPartitions": 32,  # the sizing's 16 (15,000 events/s / 1,000 = 15 -> 16), overridden
            "streamingUnits": 24,
            "eventHubsThroughputUnits": 10,
            "eventHubsMaxThroughputUnits": 20,
            "submitterMemoryGb": 2,
        }
    ).sizing
    assert dataclasses.astuple(sizing)[:7] == ("Standard", 10, 20, 0, 32, 24, 2)
    assert any(note == "override: partitions 32" for note in sizing.notes)


@pytest.mark.parametrize(
    ("raw", "line"),
    [
        (
            {"pairs": 100_000, "eventHubPartitions": 1},
            "batchscoring:eventHubPartitions: 1 cannot carry the load: 100,000 pairs every 10 s (10,000 events/s, "
            # max(15,000 events/s / 1,000, 1.5 MB/s / 1 MB/s, 18 SUs / 6) = 15
            "1.00 MB/s) with sizingMargin 1.5 needs 15 (1 MB/s or 1,000 events/s per partition; 18 streaming units use "
            "at most 6 per partition)",
        ),
        (
            {"pairs": 100_000, "streamingUnits": 3},
            "batchscoring:streamingUnits: 3 cannot carry the load: 100,000 pairs every 10 s (10,000 events/s, "
            "1.00 MB/s) with sizingMargin 1.5 needs 18 (15.00 at 1,000 events/s",
        ),
        (
            {"pairs": 100_000, "eventHubsMaxThroughputUnits": 4},
            "batchscoring:eventHubsMaxThroughputUnits: 4 cannot carry the load: 100,000 pairs every 10 s "
            "(10,000 events/s, 1.00 MB/s) with sizingMargin 1.5 needs 15 throughput units",
        ),
        (
            {"eventHubsThroughputUnits": 8, "eventHubsMaxThroughputUnits": 4},
            "batchscoring:eventHubsThroughputUnits: 8 exceeds eventHubsMaxThroughputUnits (4)",
        ),
        ({"eventHubPartitions": 64}, "batchscoring:eventHubPartitions: 64 is over Event Hubs Standard's 32"),
        ({"eventHubsProcessingUnits": 3}, "batchscoring:eventHubsProcessingUnits: 3 is not sold"),
        (
            {"pairs": 500_000, "eventHubsProcessingUnits": 4},
            "batchscoring:eventHubsProcessingUnits: 4 cannot carry the load: 500,000 pairs every 10 s (50,000 "
            "events/s, 5.00 MB/s) with sizingMargin 1.5 needs 16 processing units",
        ),
        (
            {"eventHubsTier": "Premium", "eventHubsThroughputUnits": 2},
            "batchscoring:eventHubsThroughputUnits: 2 does not apply to an Event Hubs Premium namespace",
        ),
        ({"pairs": 1_000_000}, "batchscoring:pairs: 1,000,000 pairs (1,000,000 devices x 1 sensor"),
        (
            {"pairs": 1_000_000, "eventHubsTier": "Standard"},
            "batchscoring:eventHubsTier: 1,000,000 pairs (1,000,000 devices x 1 sensor, one reading per message) "
            "every 10 s: 100,000 events/s, 10.00 MB/s needs 150 throughput units",
        ),
        (
            {
                "pairs": 10_000_000,
                "sensorsPerDevice": 100,
                "readingsPerMessage": 100,
                "readingIntervalSeconds": 600,
                "submitterMemoryGb": 1,
            },
            "batchscoring:submitterMemoryGb: 1 is below the 1.2 GB the submitter needs for 10,000,000 pairs",
        ),
        ({"pairs": 10, "devices": 10}, "batchscoring:pairs: 10 and devices (10) both set"),
        (
            {"sensorsPerDevice": 2, "readingsPerMessage": 4},
            "batchscoring:readingsPerMessage: 4 exceeds sensorsPerDevice (2)",
        ),
    ],
)
def test_an_override_that_cannot_carry_the_load_is_refused_with_the_numbers(raw: dict[str, Any], line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert line in str(caught.value)


def test_refusals_are_reported_with_the_other_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"pairs": 100_000, "streamingUnits": 3, "maxNodes": 0})
    text = str(caught.value)
    assert "batchscoring:maxNodes: Input should be greater than or equal to 1" in text
    assert "batchscoring:streamingUnits: 3 cannot carry the load" in text


# --- Event Hubs retention ----------------------------------------------------------------------------------------


PROTECTED = {"protectData": True, "alertEmails": ["ops@example.org"], "eventHubPartitions": 4}


def test_a_protected_stack_pins_its_partition_count() -> None:
    """A Standard hub's partition count is fixed at creation: with protectData it must not follow the sizing."""
    unpinned = {key: value for key, value in PROTECTED.items() if key != "eventHubPartitions"}
    with pytest.raises(ConfigError, match=r"eventHubPartitions must be set with protectData \(the load needs 4 now\)"):
        parse_config(unpinned)
    with pytest.raises(ConfigError, match=r"the load needs 16 now"):
        parse_config({**unpinned, "pairs": 100_000})
    assert parse_config(PROTECTED).event_hub_partitions == 4
    assert parse_config({"pairs": 100_000}).sizing.partitions == 16  # unprotected: sized


def test_a_protected_stack_keeps_readings_at_least_three_days() -> None:
    assert parse_config(PROTECTED).event_hub_retention == 7  # unset: Standard's maximum
    assert parse_config({**PROTECTED, "eventHubRetentionDays": 3}).event_hub_retention == 3
    with pytest.raises(ConfigError, match=r"eventHubRetentionDays: 2 day\(s\) with protectData: .* at least 3"):
        parse_config({**PROTECTED, "eventHubRetentionDays": 2})


def test_retention_is_bounded_by_the_tier() -> None:
    assert parse_config({"eventHubRetentionDays": 7}).event_hub_retention == 7
    with pytest.raises(ConfigError, match=r"eventHubRetentionDays: 8 is over Event Hubs Standard's maximum of 7"):
        parse_config({"eventHubRetentionDays": 8})
    premium = parse_config({"eventHubsTier": "Premium", "eventHubRetentionDays": 90})
    assert premium.event_hub_retention == 90 and premium.sizing.processing_units == 1
    with pytest.raises(ConfigError, match="Input should be less than or equal to 90"):
        parse_config({"eventHubsTier": "Premium", "eventHubRetentionDays": 91})


def test_the_stack_files_declare_their_fleets() -> None:
    from tests.infra.test_config import stack_file_config

    dev, prod = parse_config(stack_file_config("dev")), parse_config(stack_file_config("prod"))
    assert dev.fleet_load.pairs == 1_000 and dev.sizing.throughput_units == 1
    assert prod.fleet_load.pairs == 100_000
    assert dataclasses.astuple(prod.sizing)[:7] == ("Standard", 15, 30, 0, 16, 18, 1.0)
    assert prod.event_hub_retention == 7


# --- the resources the program declares ---------------------------------------------------------------------------


def test_a_standard_namespace_is_declared_with_the_sized_throughput_units_and_auto_inflate(deploy: Deploy) -> None:
    mocks = deploy(pairs=100_000).mocks
    namespace = mocks.inputs(NAMESPACE)
    assert namespace["sku"] == {"name": "Standard", "tier": "Standard", "capacity": 15}
    assert namespace["isAutoInflateEnabled"] is True and namespace["maximumThroughputUnits"] == 30
    # 15,000 events/s / 1,000 per partition = 15 -> 16
    assert mocks.inputs(HUB)["partitionCount"] == 16 and mocks.inputs(HUB)["messageRetentionInDays"] == 1
    assert mocks.inputs(JOB)["transformation"]["streamingUnits"] == 18
    container = mocks.inputs(GROUP)["containers"][0]
    assert container["resources"]["requests"] == {"cpu": 1.0, "memoryInGB": 1.5}  # the sizing says 1.0: the floor


def test_a_premium_namespace_is_declared_with_processing_units(deploy: Deploy) -> None:
    # 75,000 events/s / 1,000 per partition = 75 (the sizing: 128 -> Premium's 100); 80 carries it, over Standard's 32.
    mocks = deploy(pairs=500_000, eventHubPartitions=80, eventHubRetentionDays=30, submitterMemoryGb=2).mocks
    namespace = mocks.inputs(NAMESPACE)
    assert namespace["sku"] == {"name": "Premium", "tier": "Premium", "capacity": 16}  # 75,000 / 5,000 = 15 -> 16
    assert "isAutoInflateEnabled" not in namespace and "maximumThroughputUnits" not in namespace
    assert mocks.inputs(HUB)["partitionCount"] == 80 and mocks.inputs(HUB)["messageRetentionInDays"] == 30
    container = mocks.inputs(GROUP)["containers"][0]
    assert container["resources"]["requests"]["memoryInGB"] == 2


def test_the_readme_shows_the_sizing_table() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert sizing_table(reference_loads()) in readme, (
        "update README, Sizing from the fleet: python -m workloads.capacity.sizing"
    )


def test_the_offline_check_prints_the_sizing() -> None:
    from pathlib import Path

    from typer.testing import CliRunner

    from infra.check_cli import app

    result = CliRunner().invoke(app, [str(Path(__file__).parents[2] / "Pulumi.prod.yaml"), "--offline"])
    assert result.exit_code == 0, result.output
    assert "Ingestion sized for the fleet:\n  load: 100,000 pairs" in result.output
    assert "Event Hubs Standard: 15 TUs" in result.output
    # The stack's eventHubPartitions: 16 is now what the sizing gives (15,000 events/s / 1,000 = 15 -> 16): no override.
    assert "  partitions: 16 (15.00 needed" in result.output and "override: partitions" not in result.output
