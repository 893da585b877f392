"""Reading a stack file (``Pulumi.<stack>.yaml``) the way Pulumi hands it to the program, for the tools that
work offline on one (``batchscoring-check``, ``python -m infra.quota``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from infra.config import PlatformConfig, parse_stack_config


class StackFileError(ValueError):
    """The stack file cannot be read as one."""


def load_stack_file(path: Path) -> tuple[str, str, dict[str, Any]]:
    """(project, stack, settings) of ``Pulumi.<stack>.yaml``; the project from the ``Pulumi.yaml`` beside it."""
    if not path.is_file():
        raise StackFileError(f"{path}: no such file")
    stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml").removesuffix(".yml")
    if not path.name.startswith("Pulumi.") or not stack or stack == "Pulumi":
        raise StackFileError(f"{path}: a stack file is named Pulumi.<stack>.yaml")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise StackFileError(f"{path}: not YAML ({err})") from None
    settings = document.get("config") or {} if isinstance(document, dict) else None
    if not isinstance(settings, dict):
        raise StackFileError(f"{path}: `config:` must be a mapping of keys to values")
    project_file = path.parent / "Pulumi.yaml"
    project = "batchscoring"
    if project_file.is_file():
        project = str((yaml.safe_load(project_file.read_text()) or {}).get("name", project))
    return project, stack, settings


def stack_config(settings: Mapping[str, Any]) -> PlatformConfig:
    """What the program gets: Pulumi hands every value over as text (JSON for structured ones), then
    parse_stack_config (the batchscoring keys, checked together with azure-native:location)."""
    flat = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in settings.items()}
    return parse_stack_config(flat)


def read_stack_config(path: Path) -> PlatformConfig:
    """A stack file's config, validated as the program validates it (ConfigError or StackFileError if not)."""
    return stack_config(load_stack_file(path)[2])
