"""The Batch quotas a stack needs, from its config alone: the numbers to check and to ask for before ``pulumi up``.

``python -m infra.quota Pulumi.prod.yaml`` prints them (README, "Batch quotas").

What Azure documents ("Batch service quotas and limits", learn.microsoft.com/azure/batch/batch-quota-limit):
- defaults per Batch account: "Dedicated cores per Batch account 0-900", "Low-priority cores per Batch account
  0-100", "Pools per Batch account 0-100", and per subscription "Azure Batch accounts per region per subscription
  1-3"; footnote: "For capacity management purposes, the default quotas for new Batch accounts in some regions and
  for some types of subscription have been reduced from the above range of values. In some instances, these
  limits have been reduced to zero";
- core quotas in Batch service mode (this stack's pool allocation mode): "For dedicated nodes, Batch enforces a core
  quota limit for each VM series as well as a total core quota limit for the entire Batch account. For Spot nodes,
  Batch enforces only a total core quota for the Batch account without any distinction between different VM
  series."

So a stack needs, at maxNodes: dedicated cores in its VM family and in total (a dedicated pool: maxNodes nodes; a
Spot pool: its dedicatedFallbackNodes), and Spot cores (a Spot pool: maxNodes nodes). A quota is a ceiling, not a
reservation: below it the pool simply stops growing (the autoscale formula's targets are not reached).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from infra.config import ConfigError, PlatformConfig
from infra.stack_file import read_stack_config

# Standard_<series><vCPUs>[-<constrained vCPUs>]<features>[_v<n>], e.g. Standard_D8s_v5, Standard_E8-4ds_v5.
SIZE = re.compile(r"^Standard_(?P<series>[A-Z]+)(?P<vcpus>\d+)(?:-\d+)?(?P<features>[a-z]*)(?:_(?P<version>v\d+))?$")
POOLS = 2  # the pool, and its successor while a change of node size replaces it (infra/batch.py, create before delete)


def _size(vm_size: str) -> re.Match[str]:
    match = SIZE.match(vm_size)
    if not match:
        raise ValueError(f"cannot read series and vCPUs from {vm_size!r}: look them up with `az vm list-skus`")
    return match


def vcpus(vm_size: str) -> int:
    """The vCPUs the quota counts per node: the number in the size's name (a constrained size counts all of them)."""
    return int(_size(vm_size)["vcpus"])


def vm_family(vm_size: str) -> str:
    """The family Batch lists the dedicated quota under (dedicatedCoreQuotaPerVMFamily), e.g. standardDSv5Family."""
    size = _size(vm_size)
    return f"standard{size['series']}{size['features'].upper()}{size['version'] or ''}Family"


@dataclass(frozen=True)
class BatchQuotaNeed:
    vm_size: str
    family: str
    vcpus_per_node: int
    dedicated_nodes: int
    spot_nodes: int

    @property
    def dedicated_cores(self) -> int:
        return self.dedicated_nodes * self.vcpus_per_node

    @property
    def spot_cores(self) -> int:
        return self.spot_nodes * self.vcpus_per_node

    def lines(self) -> list[str]:
        per_node = f"{self.vcpus_per_node} vCPUs per {self.vm_size} node"
        return [
            "Batch accounts in the region: 1 (Azure Batch accounts per region per subscription: default 1-3)",
            f"Pools per Batch account: {POOLS} (one, and its successor while a node-size change replaces it)",
            f"Dedicated cores, {self.family}: {self.dedicated_cores} ({self.dedicated_nodes} x {per_node})",
            f"Dedicated cores, total for the account: {self.dedicated_cores}",
            f"Spot (low-priority) cores, total for the account: {self.spot_cores} ({self.spot_nodes} x {per_node})",
        ]


def batch_quota_need(config: PlatformConfig) -> BatchQuotaNeed:
    """What the pool can ask for at maxNodes: Spot pools also their dedicated fallback."""
    return BatchQuotaNeed(
        vm_size=config.vm_size,
        family=vm_family(config.vm_size),
        vcpus_per_node=vcpus(config.vm_size),
        dedicated_nodes=config.dedicated_fallback_nodes if config.spot_nodes else config.max_nodes,
        spot_nodes=config.max_nodes if config.spot_nodes else 0,
    )


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m infra.quota Pulumi.<stack>.yaml", file=sys.stderr)
        return 2
    try:
        need = batch_quota_need(read_stack_config(Path(argv[0])))
    except (OSError, ConfigError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{argv[0]}: Batch quotas this stack needs (Batch service pool allocation mode)")
    for line in need.lines():
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
