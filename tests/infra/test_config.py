from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import ValidationError

from infra.config import (
    MODEL_FAMILIES,
    OUTPUT_DELAY_MINUTES,
    ConfigError,
    PlatformConfig,
    _first_scoring_delay,
    parse_config,
    parse_stack_config,
    raw_stack_config,
    reference_table,
)
from infra.windows_zones import WINDOWS_ZONE_OF, WINDOWS_ZONES
from workloads.common.model_versions import DEFAULT_POLICY, VersionPolicy
from workloads.training.families import FAMILIES

ROOT = Path(__file__).resolve().parents[2]


def pulumi_config(stack: str) -> dict[str, str]:
    """A Pulumi.<stack>.yaml as Pulumi hands it to the program: flat keys of every namespace, JSON-encoded values."""
    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


def stack_file_config(stack: str) -> dict[str, Any]:
    return raw_stack_config(pulumi_config(stack))


def test_defaults_are_valid_and_small() -> None:
    config = parse_config({})
    assert (config.min_nodes, config.max_nodes, config.vm_size) == (0, 4, "Standard_D2s_v5")
    assert config.schedule_frequency == "Hour" and config.schedule_interval == 1
    assert config.aggregation.window.total_seconds() == 300
    assert (config.lateness_minutes, config.schedule_minute, config.reconcile_hours) == (15, 20, 24)
    assert config.trusted_types == []


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_files_are_valid(stack: str) -> None:
    config = parse_config(stack_file_config(stack))
    assert isinstance(config, PlatformConfig)
    assert parse_stack_config(pulumi_config(stack)) == config  # what the program reads: azure-native:location agrees


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_files_trigger_after_the_settle_time(stack: str) -> None:
    config = parse_config(stack_file_config(stack))
    assert config.schedule_frequency == "Hour" and config.schedule_minute >= config.lateness_minutes


def test_prod_is_bigger_and_protected() -> None:
    dev, prod = parse_config(stack_file_config("dev")), parse_config(stack_file_config("prod"))
    assert prod.max_nodes > dev.max_nodes and prod.spot_nodes and prod.protect_data and not dev.protect_data
    assert prod.tags == {"costCenter": "iot-analytics"}
    # The dev stack stays simple and cheap; prod keeps data through zone and region loss, deletes and overwrites.
    assert (dev.storage_redundancy, dev.blob_versioning, dev.private_network) == ("LRS", False, False)
    assert (prod.storage_redundancy, prod.soft_delete_days, prod.blob_versioning) == ("GZRS", 30, True)
    assert prod.private_network and prod.registry_sku == "Premium" and prod.admin_ip_ranges


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"vmSize": "big-vm"}, "batchscoring:vmSize: String should match pattern"),
        ({"maxNodes": 0}, "batchscoring:maxNodes: Input should be greater than or equal to 1 (allowed 1..300)"),
        ({"maxNodes": 301}, "(allowed 1..300)"),
        ({"minNodes": 5, "maxNodes": 2}, "batchscoring:minNodes: 5 must not exceed maxNodes (2)"),
        ({"storageRedundancy": "ZRS2"}, "batchscoring:storageRedundancy: Input should be 'LRS', 'ZRS'"),
        ({"softDeleteDays": 366}, "batchscoring:softDeleteDays: Input should be less than or equal to 365"),
        ({"poolImage": "ubuntu"}, "batchscoring:poolImage: String should match pattern"),
        ({"adminIpRanges": ["10.0.0.0"]}, "batchscoring:adminIpRanges.0: String should match pattern"),
        ({"vnetAddressSpace": "10.40.0.1/16"}, "batchscoring:vnetAddressSpace: must be a network address"),
        ({"vnetAddressSpace": "10.40.0.0/26"}, "batchscoring:vnetAddressSpace: prefix must be /16 to /24, got /26"),
        (
            {
                "privateNetwork": True,
                "subnetId": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v/subnets/s",
            },
            "batchscoring:subnetId: not used with privateNetwork",
        ),
        (
            {"privateNetwork": True, "registrySku": "Premium"},
            "batchscoring:adminIpRanges: privateNetwork with registrySku Premium denies the registry",
        ),
        (
            {"latenessMinutes": 9},
            "batchscoring:latenessMinutes: 9 minutes do not cover lateToleranceSeconds (300 s) plus the stream "
            f"job's output delay ({OUTPUT_DELAY_MINUTES} min): use at least 10",
        ),
        ({"lateToleranceSeconds": 900}, "batchscoring:latenessMinutes: 15 minutes do not cover"),  # default lateness
        (
            {"latenessMinutes": 180, "lateToleranceSeconds": 10_501},
            "lower lateToleranceSeconds to at most 10500",
        ),
        (
            {"reconcileHours": 0},
            "batchscoring:reconcileHours: Input should be greater than or equal to 1 (allowed 1..168)",
        ),
        ({"reconcileHours": 169}, "(allowed 1..168)"),
        (
            {"shardCount": 4001},
            "batchscoring:shardCount: 4001 shards would have the stream job write up to 8002 partition folders at "
            "once (2 hours x shardCount, around each hour boundary), over the 8,000 distinct partition keys Stream "
            "Analytics' custom blob partitioning documents; use at most 4000 shards",
        ),
        ({"shardCount": 0}, "batchscoring:shardCount: Input should be greater than or equal to 1 (allowed 1..4000)"),
        ({"trustedTypes": "sklearn.tree._tree.Tree"}, "batchscoring:trustedTypes: Input should be a valid list"),
        ({"trustedTypes": ["sklearn.tree._tree.Tree", "Tree"]}, "batchscoring:trustedTypes.1: String should match"),
        ({"trustedTypes": ["a.b,c.d"]}, "batchscoring:trustedTypes.0: String should match"),
        ({"trustedTypes": ["os.system; rm"]}, "batchscoring:trustedTypes.0: String should match"),
        (
            {"autoscaleIntervalMinutes": 1},
            "batchscoring:autoscaleIntervalMinutes: Input should be greater than or equal to 5",
        ),
        ({"windowMinutes": 7}, "batchscoring:windowMinutes: must divide 60"),
        ({"scheduleFrequency": "Year"}, "batchscoring:scheduleFrequency: Input should be 'Minute', 'Hour' or 'Day'"),
        ({"scheduleInterval": 0}, "batchscoring:scheduleInterval"),
        ({"namePrefix": "Has Caps"}, "batchscoring:namePrefix"),
        ({"subnetId": "my-subnet"}, "batchscoring:subnetId: must be a subnet resource id"),
        ({"maxNodez": 3}, "batchscoring:maxNodez: unknown key; did you mean maxNodes?"),
        ({"max_nodes": 3}, "batchscoring:max_nodes: unknown key; did you mean maxNodes?"),
        ({"lateness_minutes": 20}, "batchscoring:lateness_minutes: unknown key; did you mean latenessMinutes?"),
        ({"MaxNodes": 3}, "batchscoring:MaxNodes: unknown key; did you mean maxNodes?"),
        ({"colour": "blue"}, "batchscoring:colour: unknown key; see the configuration reference in README.md"),
        # Configs that passed but could not work (issue 16, finding 11).
        (
            {"scheduleMinute": 5},
            "batchscoring:scheduleMinute: 5 is before the settle time (latenessMinutes 15): each run would find the "
            "hour that just ended not yet complete and score it a whole hour later; use 15..59",
        ),
        (
            {"scheduleMinute": 5, "latenessMinutes": 70, "hourDeadlineMinutes": 130},
            "batchscoring:scheduleMinute: 5 is before the settle time (latenessMinutes 70): each run would find the "
            "hour that just ended not yet complete and score it a whole hour later; use 10..59",
        ),
        (
            {"scheduleFrequency": "Day", "reconcileHours": 1, "hourDeadlineMinutes": 1401},
            "batchscoring:reconcileHours: 1 does not cover the schedule's period: it runs every day, 24 hours apart; "
            "23 of every 24 hours would never be scored; use at least 24",
        ),
        (
            {"scheduleInterval": 3, "reconcileHours": 2, "hourDeadlineMinutes": 200},
            "batchscoring:reconcileHours: 2 does not cover the schedule's period: it runs every 3 hours, 3 hours "
            "apart; 1 of every 3 hours would never be scored; use at least 3",
        ),
        (
            {"scheduleFrequency": "Day", "timeZone": "W. Europe Standard Time", "hourDeadlineMinutes": 1401},
            "batchscoring:reconcileHours: 24 does not cover the schedule's period: it runs every day, 24 hours apart "
            "(25 across a daylight-saving change in W. Europe Standard Time); use at least 25",
        ),
        (
            {"scheduleFrequency": "Day"},
            "batchscoring:hourDeadlineMinutes: 45 is not after the 1400 minutes an hour can wait past its end for "
            "the run that scores it (Day schedule, interval 1, scheduleMinute 20): on-time hours would alert; use "
            "more than 1400",
        ),
        (
            {"scheduleFrequency": "Day", "scheduleInterval": 2, "reconcileHours": 48, "hourDeadlineMinutes": 1440},
            "no deadline up to 1440 can wait that long: run more often",
        ),
        (
            {"timeZone": "Europe/Berlin"},
            "batchscoring:timeZone: Europe/Berlin is a tzdata (IANA) name; Logic Apps take Windows time zone ids: "
            "use 'W. Europe Standard Time'",
        ),
        ({"timeZone": "America/New_York"}, "use 'Eastern Standard Time'"),
        ({"timeZone": "Etc/UTC"}, "use 'UTC'"),
        ({"timeZone": "Asia/Calcutta"}, "use 'India Standard Time'"),
        ({"timeZone": "pacific standard time"}, "matched exactly: use 'Pacific Standard Time'"),
        ({"timeZone": "W Europe Standard Time"}, "did you mean 'W. Europe Standard Time'?"),
        ({"timeZone": "CET+1"}, "'CET+1' is not a Windows time zone id, which Logic Apps take"),
    ],
)
def test_invalid_values_name_the_key_and_the_allowed_range(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(raw)
    assert message in str(error.value)


def test_configs_that_cannot_work_are_reported_with_the_other_errors() -> None:
    """Issue 16, finding 11: each one names its key, in one report with the plain errors."""
    with pytest.raises(ConfigError) as error:
        parse_stack_config(
            {
                "azure-native:location": "northeurope",
                "batchscoring:location": "westeurope",
                "batchscoring:maxNodes": "0",
                "batchscoring:scheduleMinute": "5",
                "batchscoring:timeZone": "Europe/Berlin",
            }
        )
    keys = [line.strip().split(":")[1] for line in str(error.value).splitlines()[1:]]
    assert keys == ["maxNodes", "timeZone", "scheduleMinute", "location"]
    with pytest.raises(ConfigError) as error:
        parse_config({"scheduleFrequency": "Day", "reconcileHours": 1, "hourDeadlineMinutes": 1401, "maxNodes": 0})
    keys = [line.strip().split(":")[1] for line in str(error.value).splitlines()[1:]]
    assert keys == ["maxNodes", "reconcileHours"]


@pytest.mark.parametrize(
    ("provider", "ours", "valid"),
    [
        (None, None, True),  # the provider's default unset: nothing to compare
        ("westeurope", None, True),  # our default
        ("West Europe", "westeurope", True),  # ARM's display name for the same region
        ("northeurope", None, False),  # the README's `pulumi config set azure-native:location` alone
        ("westeurope", "northeurope", False),
    ],
)
def test_the_region_is_set_once(provider: str | None, ours: str | None, valid: bool) -> None:
    """Every resource goes to batchscoring:location (the resource group's, the others take it from the group), so an
    azure-native:location naming another region would be a setting silently unused."""
    all_config = {"azure-native:location": provider, "batchscoring:location": ours}
    config = {k: v for k, v in all_config.items() if v is not None}
    if valid:
        assert parse_stack_config(config).location == (ours or "westeurope")
    else:
        with pytest.raises(ConfigError, match=r"batchscoring:location: \w+ is not azure-native:location \(\w+\)"):
            parse_stack_config(config)


@pytest.mark.parametrize(
    ("frequency", "interval", "minute", "lateness", "delay"),
    [
        ("Hour", 1, 20, 15, 20),  # the default: scheduleMinute past the next hour
        ("Hour", 1, 5, 15, 65),  # the review's case: an hour late
        ("Hour", 2, 20, 15, 80),
        ("Minute", 15, 5, 15, 20),  # runs at :05 :20 :35 :50, complete from :15
        ("Minute", 7, 0, 15, 21),
        ("Day", 1, 20, 15, 1400),  # 00:20 daily: the 00:00 hour waits until the next day
    ],
)
def test_the_longest_wait_for_a_scoring_run(
    frequency: str, interval: int, minute: int, lateness: int, delay: int
) -> None:
    assert _first_scoring_delay(frequency, interval, minute, lateness) == delay


def test_every_windows_zone_maps_to_a_tzdata_zone() -> None:
    assert {"UTC", "W. Europe Standard Time", "Eastern Standard Time", "India Standard Time"} <= WINDOWS_ZONES.keys()
    assert set(WINDOWS_ZONE_OF.values()) <= WINDOWS_ZONES.keys()
    assert all(parse_config({"timeZone": zone}).time_zone == zone for zone in WINDOWS_ZONES)


def test_every_invalid_key_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"maxNodes": 0, "taskInputMib": 0, "windowMinutes": 7})
    lines = str(error.value).splitlines()[1:]
    assert len(lines) == 3


def test_rules_across_keys_are_reported_with_the_other_errors() -> None:
    """pydantic skips model validators when a field failed; parse_config checks the rules on the raw values."""
    with pytest.raises(ConfigError) as error:
        parse_config(
            {
                "taskInputMib": 0,
                "windowMinutes": 7,
                "task_max_retries": 1,
                "minNodes": 5,
                "maxNodes": 2,
                "latenessMinutes": 5,
            }
        )
    lines = [line.strip() for line in str(error.value).splitlines()[1:]]
    assert [line.split(":")[1] for line in lines] == [
        "windowMinutes",
        "taskInputMib",
        "task_max_retries",
        "minNodes",
        "latenessMinutes",
    ]
    assert "batchscoring:minNodes: 5 must not exceed maxNodes (2)" in lines


@pytest.mark.parametrize(
    "raw",
    [
        {"minNodes": 5, "maxNodes": 0},  # maxNodes itself invalid
        {"minNodes": 5, "maxNodes": "many"},
        {"minNodes": 5, "max_nodes": 2},  # maxNodes given only under a refused spelling
        {"latenessMinutes": -1},
        {"latenessMinutes": 5, "lateToleranceSeconds": -1},
    ],
)
def test_a_rule_with_an_invalid_input_is_skipped_not_guessed(raw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(raw)
    lines = str(error.value).splitlines()[1:]
    assert len(lines) == 1 and "must not exceed" not in lines[0] and "do not cover" not in lines[0]


@pytest.mark.parametrize(
    ("lateness", "tolerance", "valid"),
    [(10, 300, True), (9, 300, False), (5, 0, True), (4, 0, False), (15, 600, True), (15, 601, False)],
)
def test_settle_time_covers_late_tolerance_and_output_delay(lateness: int, tolerance: int, valid: bool) -> None:
    raw = {"latenessMinutes": lateness, "lateToleranceSeconds": tolerance}
    if valid:
        assert parse_config(raw).lateness_minutes == lateness
    else:
        with pytest.raises(ConfigError, match="latenessMinutes"):
            parse_config(raw)


def test_rules_see_values_as_the_model_coerces_them() -> None:
    with pytest.raises(ConfigError, match="latenessMinutes: 5 minutes"):
        parse_config({"latenessMinutes": "5", "maxNodes": 0})


def test_the_model_itself_accepts_only_camel_case_and_keeps_the_rules() -> None:
    assert PlatformConfig.model_validate({"maxNodes": 3}).max_nodes == 3
    with pytest.raises(ValidationError):
        PlatformConfig.model_validate({"max_nodes": 3})
    with pytest.raises(ValidationError, match="must not exceed"):
        PlatformConfig.model_validate({"minNodes": 5, "maxNodes": 2})


def test_trusted_types_are_dotted_paths() -> None:
    types = ["sklearn.tree._tree.Tree", "numpy.dtype", "my_pkg.sub.Model2"]
    assert parse_config({"trustedTypes": types}).trusted_types == types


def test_model_family_and_version_policy() -> None:
    assert tuple(FAMILIES) == MODEL_FAMILIES  # the names the trainer knows, without infra importing it
    default = parse_config({})
    assert (default.model_family, default.sklearn_version_policy) == ("ocsvm", DEFAULT_POLICY.value)
    assert {p.value for p in VersionPolicy} == set(
        get_args(PlatformConfig.model_fields["sklearn_version_policy"].annotation)
    )
    assert parse_config({"modelFamily": "my_pkg.models.MyDetector"}).model_family == "my_pkg.models.MyDetector"
    for bad in ("svm", "iforest; rm", "my_pkg.models:make_detector", ".Detector"):
        with pytest.raises(ValueError, match="batchscoring:modelFamily: String should match"):
            parse_config({"modelFamily": bad})
    with pytest.raises(ValueError, match="batchscoring:sklearnVersionPolicy: Input should be 'exact'"):
        parse_config({"sklearnVersionPolicy": "patch"})


def test_raw_stack_config_decodes_values_and_ignores_other_namespaces() -> None:
    raw = raw_stack_config(
        {
            "batchscoring:maxNodes": "8",
            "batchscoring:vmSize": "Standard_D4s_v5",
            "azure-native:location": "westeurope",
            "batchscoring:tags": '{"a": "b"}',
        }
    )
    assert raw == {"maxNodes": 8, "vmSize": "Standard_D4s_v5", "tags": {"a": "b"}}


def test_readme_configuration_reference_matches_config_py() -> None:
    assert reference_table() in (ROOT / "README.md").read_text(), "regenerate the README table: python -m infra.config"


def test_the_shard_count_is_bounded_by_the_stream_jobs_partitioned_output() -> None:
    """Stream Analytics documents appends to a partition's blobs only under 8,000 partition keys; the job writes a key
    per shard of each hour its output holds, two around an hour boundary (infra/config.py, MAX_STREAM_SHARD_COUNT)."""
    assert parse_config({"shardCount": 4000}).shard_count == 4000
    assert "| `batchscoring:shardCount` | `16` | 1..4000 |" in reference_table()
