from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.config import ConfigError, PlatformConfig, parse_config, raw_stack_config, reference_table

ROOT = Path(__file__).resolve().parents[2]


def stack_file_config(stack: str) -> dict[str, Any]:
    """A Pulumi.<stack>.yaml as Pulumi hands it to the program: flat keys, JSON-encoded values."""
    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return raw_stack_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()})


def test_defaults_are_valid_and_small() -> None:
    config = parse_config({})
    assert (config.min_nodes, config.max_nodes, config.vm_size) == (0, 4, "Standard_D2s_v5")
    assert config.schedule_frequency == "Hour" and config.schedule_interval == 1
    assert config.aggregation.window.total_seconds() == 300


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_files_are_valid(stack: str) -> None:
    config = parse_config(stack_file_config(stack))
    assert isinstance(config, PlatformConfig)


def test_prod_is_bigger_and_protected() -> None:
    dev, prod = parse_config(stack_file_config("dev")), parse_config(stack_file_config("prod"))
    assert prod.max_nodes > dev.max_nodes and prod.spot_nodes and prod.protect_data and not dev.protect_data
    assert prod.tags == {"costCenter": "iot-analytics"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"vmSize": "big-vm"}, "batchscoring:vmSize: String should match pattern"),
        ({"maxNodes": 0}, "batchscoring:maxNodes: Input should be greater than or equal to 1 (allowed 1..300)"),
        ({"maxNodes": 301}, "(allowed 1..300)"),
        ({"minNodes": 5, "maxNodes": 2}, "minNodes (5) must not exceed maxNodes (2)"),
        (
            {"autoscaleIntervalMinutes": 1},
            "batchscoring:autoscaleIntervalMinutes: Input should be greater than or equal to 5",
        ),
        ({"windowMinutes": 7}, "batchscoring:windowMinutes: must divide 60"),
        ({"scheduleFrequency": "Year"}, "batchscoring:scheduleFrequency: Input should be 'Minute', 'Hour' or 'Day'"),
        ({"scheduleInterval": 0}, "batchscoring:scheduleInterval"),
        ({"namePrefix": "Has Caps"}, "batchscoring:namePrefix"),
        ({"subnetId": "my-subnet"}, "batchscoring:subnetId: must be a subnet resource id"),
        ({"maxNodez": 3}, "batchscoring:maxNodez: unknown key"),
    ],
)
def test_invalid_values_name_the_key_and_the_allowed_range(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(raw)
    assert message in str(error.value)


def test_every_invalid_key_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"maxNodes": 0, "chunkSize": 0, "windowMinutes": 7})
    lines = str(error.value).splitlines()[1:]
    assert len(lines) == 3


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
