"""BatchScoringPlatform: composes every component of the topology and exposes the typed outputs."""

from __future__ import annotations

import pulumi
from pulumi_azure_native import resources

from infra import roles
from infra.acr_token import TokenExchanger, exchange_token
from infra.batch import BatchCompute, BatchComputeArgs
from infra.config import PlatformConfig
from infra.identity import AccessPolicy, Grant, Identities, IdentitiesArgs, built_in, custom_role
from infra.ingestion import Ingestion, IngestionArgs
from infra.naming import compact_name, dashed_name
from infra.registry import Registry, RegistryArgs
from infra.scheduler import Recurrence, Scheduler, SchedulerArgs
from infra.storage import PlatformStorage, StorageArgs
from workloads.common import envvars
from workloads.common.layout import Container

BATCH_JOB_ACTIONS = ["Microsoft.Batch/batchAccounts/read", "Microsoft.Batch/batchAccounts/pools/read"]
BATCH_JOB_DATA_ACTIONS = ["Microsoft.Batch/batchAccounts/jobs/*"]
START_GROUP_ACTIONS = [
    "Microsoft.ContainerInstance/containerGroups/read",
    "Microsoft.ContainerInstance/containerGroups/start/action",
]


class BatchScoringPlatform(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        config: PlatformConfig,
        stack: str,
        token_exchanger: TokenExchanger = exchange_token,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("batchscoring:infra:Platform", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix, tags = config.name_prefix, {"stack": stack, "app": "batchscoring", **config.tags}

        self.resource_group = resources.ResourceGroup(
            f"{name}-rg",
            resource_group_name=dashed_name(prefix, stack, "rg", 90),
            location=config.location,
            tags=tags,
            opts=child,
        )
        rg, location = self.resource_group.name, self.resource_group.location
        identities = Identities(
            f"{name}-identities",
            IdentitiesArgs(
                rg,
                location,
                {p: dashed_name(prefix, stack, p, 128) for p in ("scorer", "submitter")},
                tags,
            ),
            child,
        )
        scorer_id, submitter_id = identities["scorer"], identities["submitter"]

        self.storage = PlatformStorage(
            f"{name}-storage",
            StorageArgs(
                rg,
                location,
                compact_name(prefix, stack, "data", 24),
                retention_days={
                    Container.AGGREGATES: config.aggregates_retention_days,
                    Container.PREDICTIONS: config.predictions_retention_days,
                    Container.LOGS: config.logs_retention_days,
                },
                protect=config.protect_data,
                tags=tags,
            ),
            child,
        )
        self.ingestion = Ingestion(
            f"{name}-ingestion",
            IngestionArgs(
                rg,
                location,
                dashed_name(prefix, stack, "events", 50),
                self.storage.account_name,
                config.aggregation,
                partitions=config.event_hub_partitions,
                retention_days=config.event_hub_retention_days,
                streaming_units=config.streaming_units,
                protect=config.protect_data,
                tags=tags,
            ),
            child,
        )
        self.registry = Registry(
            f"{name}-registry",
            RegistryArgs(
                rg,
                location,
                compact_name(prefix, stack, "acr", 50),
                token_exchanger=token_exchanger,
                tags=tags,
            ),
            child,
        )
        self.batch = BatchCompute(
            f"{name}-batch",
            BatchComputeArgs(
                rg,
                location,
                compact_name(prefix, stack, "batch", 24),
                config.vm_size,
                config.autoscale,
                config.autoscale_interval_minutes,
                self.registry.scorer_image,
                self.registry.login_server,
                scorer_id.id,
                subnet_id=config.subnet_id,
                tags=tags,
            ),
            child,
        )
        self.scheduler = Scheduler(
            f"{name}-scheduler",
            SchedulerArgs(
                rg,
                location,
                dashed_name(prefix, stack, "submitter", 63),
                self.registry.submitter_image,
                self.registry.login_server,
                submitter_id.id,
                environment={
                    envvars.STORAGE_ACCOUNT_URL: self.storage.blob_endpoint,
                    envvars.AZURE_CLIENT_ID: submitter_id.client_id,
                    envvars.STACK: stack,
                    envvars.BACKEND: "batch",
                    envvars.CHUNK_SIZE: str(config.chunk_size),
                    envvars.LATENESS_MINUTES: str(config.lateness_minutes),
                    envvars.RECONCILE_HOURS: str(config.reconcile_hours),
                    envvars.BATCH_ACCOUNT_URL: self.batch.account_endpoint,
                    envvars.BATCH_POOL_ID: self.batch.pool_id,
                    envvars.SCORER_IMAGE: self.registry.scorer_image,
                    envvars.SCORER_IDENTITY_ID: scorer_id.id,
                    envvars.SCORER_CLIENT_ID: scorer_id.client_id,
                    envvars.TASK_MAX_RETRIES: str(config.task_max_retries),
                    envvars.TASK_MAX_WALL_MINUTES: str(config.task_max_wall_minutes),
                    # Absent rather than empty when none, so a reader never has to split "" into [""].
                    **({envvars.TRUSTED_TYPES: ",".join(config.trusted_types)} if config.trusted_types else {}),
                },
                recurrence=Recurrence(
                    config.schedule_frequency, config.schedule_interval, config.time_zone, config.schedule_minute
                ),
                tags=tags,
            ),
            child,
        )

        batch_submitter = custom_role(
            f"{name}-role-batch-submitter",
            f"batchscoring {stack} batch job submitter",
            self.resource_group.id,
            BATCH_JOB_ACTIONS,
            BATCH_JOB_DATA_ACTIONS,
            child,
        )
        group_starter = custom_role(
            f"{name}-role-group-starter",
            f"batchscoring {stack} submitter starter",
            self.resource_group.id,
            START_GROUP_ACTIONS,
            opts=child,
        )
        reader, contributor = built_in(roles.STORAGE_BLOB_DATA_READER), built_in(roles.STORAGE_BLOB_DATA_CONTRIBUTOR)
        container = self.storage.container_id
        self.access = AccessPolicy(
            f"{name}-access",
            [
                Grant("scorer-read-models", scorer_id.principal_id, reader, container(Container.MODELS)),
                Grant("scorer-read-aggregates", scorer_id.principal_id, reader, container(Container.AGGREGATES)),
                Grant(
                    "scorer-write-predictions", scorer_id.principal_id, contributor, container(Container.PREDICTIONS)
                ),
                Grant("scorer-write-logs", scorer_id.principal_id, contributor, container(Container.LOGS)),
                Grant("scorer-pull", scorer_id.principal_id, built_in(roles.ACR_PULL), self.registry.registry.id),
                Grant("submitter-read-models", submitter_id.principal_id, reader, container(Container.MODELS)),
                Grant("submitter-read-aggregates", submitter_id.principal_id, reader, container(Container.AGGREGATES)),
                Grant("submitter-write-logs", submitter_id.principal_id, contributor, container(Container.LOGS)),
                Grant("submitter-pull", submitter_id.principal_id, built_in(roles.ACR_PULL), self.registry.registry.id),
                Grant("submitter-batch-jobs", submitter_id.principal_id, batch_submitter.id, self.batch.account.id),
                Grant(
                    "asa-read-events",
                    self.ingestion.job_principal_id,
                    built_in(roles.EVENT_HUBS_DATA_RECEIVER),
                    self.ingestion.hub.id,
                ),
                Grant(
                    "asa-write-aggregates",
                    self.ingestion.job_principal_id,
                    contributor,
                    container(Container.AGGREGATES),
                ),
                Grant(
                    "scheduler-start-submitter",
                    self.scheduler.workflow_principal_id,
                    group_starter.id,
                    self.scheduler.container_group.id,
                ),
            ],
            child,
        )

        self.outputs: dict[str, pulumi.Input[object]] = {
            "resource_group": rg,
            "storage_account": self.storage.account_name,
            "blob_endpoint": self.storage.blob_endpoint,
            "containers": [c.value for c in Container],
            "event_hub_namespace": self.ingestion.namespace.name,
            "event_hub": self.ingestion.hub.name,
            "stream_analytics_job": self.ingestion.job.name,
            "acr_login_server": self.registry.login_server,
            "scorer_image": self.registry.scorer_image,
            "submitter_image": self.registry.submitter_image,
            "batch_account_endpoint": self.batch.account_endpoint,
            "batch_pool_id": self.batch.pool_id,
            "submitter_container_group": self.scheduler.container_group.name,
            "logic_app_id": self.scheduler.workflow.id,
        }
        self.register_outputs(self.outputs)
