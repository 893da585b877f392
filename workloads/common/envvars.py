"""Environment variables through which Pulumi configures the scheduled submitter container.

Defined once here, imported by the infrastructure (which sets them) and the submitter (which reads
them), so a renamed variable fails a test instead of a 3 a.m. run.
"""

from __future__ import annotations

from workloads.common.storage import ACCOUNT_URL_ENV
from workloads.common.telemetry import CONNECTION_STRING_ENV

STORAGE_ACCOUNT_URL = ACCOUNT_URL_ENV
AZURE_CLIENT_ID = "AZURE_CLIENT_ID"  # selects the user-assigned identity for DefaultAzureCredential
STACK = "SCORING_STACK"
TASK_INPUT_MIB = "SCORING_TASK_INPUT_MIB"
SHARD_COUNT = "SCORING_SHARD_COUNT"
LATENESS_MINUTES = "SCORING_LATENESS_MINUTES"
RECONCILE_HOURS = "SCORING_RECONCILE_HOURS"
SKLEARN_VERSION_POLICY = "SCORING_SKLEARN_VERSION_POLICY"  # exact | minor | major | any (model_versions)
MODEL_FAMILY = "SCORING_MODEL_FAMILY"  # the family the stack expects: shown in reports, never enforced
TRUSTED_TYPES = "SCORING_TRUSTED_TYPES"  # comma-separated list of dotted type paths; absent when none
# The one module:function model factory a training task may import and call: set by `trainer submit` on the tasks
# (a Batch task's environment, the local workers') only when its user chose that factory; a manifest naming any
# other is refused (manifests live in 'logs', which more identities can write than can change a Batch task).
TRAINING_FACTORY = "SCORING_TRAINING_FACTORY"
# Read by the scorer only (its CLI options' environment variables), for an operator to set on its nodes.
MAX_MODEL_MIB = "SCORING_MAX_MODEL_MIB"  # cap on a model's uncompressed size
MAX_CONCURRENT_LOADS = "SCORING_MAX_CONCURRENT_LOADS"  # models a task deserialises at once
BACKEND = "SCORING_BACKEND"
BATCH_ACCOUNT_URL = "BATCH_ACCOUNT_URL"
BATCH_POOL_ID = "BATCH_POOL_ID"
SCORER_IMAGE = "SCORER_IMAGE"
SCORER_IDENTITY_ID = "SCORER_IDENTITY_RESOURCE_ID"
SCORER_CLIENT_ID = "SCORER_CLIENT_ID"
TASK_MAX_RETRIES = "BATCH_TASK_MAX_RETRIES"
TASK_MAX_WALL_MINUTES = "BATCH_TASK_MAX_WALL_MINUTES"
APPINSIGHTS_CONNECTION_STRING = CONNECTION_STRING_ENV  # absent unless the stack's `telemetry` is on
