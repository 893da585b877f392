"""Command-line options that several tools share, defined once so they cannot drift apart."""

from __future__ import annotations

from typing import Annotated

import typer

from workloads.common import envvars
from workloads.common.model_versions import VersionPolicy
from workloads.common.shards import MAX_SHARD_COUNT

# The demo, submitter and trainer take the same shard count from the same place (the stack sets
# SCORING_SHARD_COUNT for the submitter; the stream job's query is generated with it), so the folders the
# data lands in, the tasks and the model packs always agree.
ShardCount = Annotated[
    int,
    typer.Option(
        envvar=envvars.SHARD_COUNT,
        min=1,
        max=MAX_SHARD_COUNT,
        help="Shards of the fleet (a hash of the device id): one aggregate folder per hour, one task and one "
        "model pack each. Must equal the stack's shardCount.",
    ),
]

# The scorer, submitter (for its tasks) and trainer judge a model's recorded scikit-learn version alike.
VersionPolicyOption = Annotated[
    VersionPolicy,
    typer.Option(
        envvar=envvars.SKLEARN_VERSION_POLICY,
        help="How much of a model's recorded scikit-learn version must equal the runtime's: exact, minor, major "
        "or any; a model outside it is refused (version_mismatch).",
    ),
]

# The trainer's commands (train, submit, pack, import) take the same extra trusted types.
TrustedType = Annotated[
    list[str] | None,
    typer.Option(
        help="A type skops may load beyond its defaults and the vetted list (repeatable), for a model family of "
        "your own; the supported families never need one."
    ),
]
