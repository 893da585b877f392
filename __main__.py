"""The Pulumi program: typed config -> BatchScoringPlatform -> stack outputs."""

import pulumi

from infra.config import load_config
from infra.platform import BatchScoringPlatform

platform = BatchScoringPlatform("batchscoring", load_config(), pulumi.get_stack())
for key, value in platform.outputs.items():
    pulumi.export(key, value)
