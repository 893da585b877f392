"""BatchScoringPlatform: composes every component of the topology and exposes the typed outputs."""

from __future__ import annotations

import pulumi
from pulumi_azure_native import authorization, resources

from infra import roles
from infra.acr_token import TokenExchanger, exchange_token
from infra.alerts import AlertTargets, platform_activity_rules, platform_rules
from infra.batch import BatchCompute, BatchComputeArgs, PoolImage
from infra.config import PlatformConfig
from infra.identity import (
    GRANT_SETTLE_SECONDS,
    AccessPolicy,
    Grant,
    Identities,
    IdentitiesArgs,
    built_in,
    custom_role,
)
from infra.ingestion import Ingestion, IngestionArgs, StreamJobIO, StreamJobIOArgs
from infra.monitoring import Diagnostics, Monitoring, MonitoringArgs, Watch
from infra.naming import NameSeed, stack_names
from infra.network import PrivateNetwork, PrivateNetworkArgs
from infra.registry import Registry, RegistryArgs
from infra.scheduler import SUBMITTER_MEMORY_FLOOR_GB, Recurrence, Scheduler, SchedulerArgs
from infra.storage import DataProtection, Firewall, PlatformStorage, StorageArgs
from workloads.common import envvars
from workloads.common.layout import Container

# Read and start one container group: no built-in role is that narrow (Container Instances Contributor may also
# create, change and delete groups), so the Logic App gets this custom role, assignable in the resource group only.
START_GROUP_ACTIONS = [
    "Microsoft.ContainerInstance/containerGroups/read",
    "Microsoft.ContainerInstance/containerGroups/start/action",
]


class BatchScoringPlatform(pulumi.ComponentResource):
    """The topology, in the order Azure needs it: every identity's role assignments exist before anything runs as
    that identity (pool, container group, Logic App, the stream job's input, output and start)."""

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
        # The subscription seeds the global names' suffix (infra/naming.py); read once, as a plain value.
        subscription = authorization.get_client_config().subscription_id
        names = stack_names(NameSeed(subscription, pulumi.get_project(), stack, prefix, config.location))

        self.resource_group = resources.ResourceGroup(
            f"{name}-rg",
            resource_group_name=names.resource_group,
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
                dict(names.identities),
                tags,
            ),
            child,
        )
        scorer_id, submitter_id, scheduler_id = identities["scorer"], identities["submitter"], identities["scheduler"]
        self.monitoring = Monitoring(
            f"{name}-monitoring",
            MonitoringArgs(
                rg,
                location,
                workspace_name=names.workspace,
                retention_days=config.log_retention_days,
                telemetry=config.telemetry,
                tags=tags,
            ),
            child,
        )
        self.network = (
            PrivateNetwork(
                f"{name}-network",
                PrivateNetworkArgs(rg, location, names.vnet, config.vnet_address_space, tags),
                child,
            )
            if config.private_network
            else None
        )
        admin_ips = tuple(config.admin_ip_ranges)

        self.storage = PlatformStorage(
            f"{name}-storage",
            StorageArgs(
                rg,
                location,
                names.storage_account,
                retention_days={
                    Container.AGGREGATES: config.aggregates_retention_days,
                    Container.PREDICTIONS: config.predictions_retention_days,
                    Container.LOGS: config.logs_retention_days,
                },
                protection=DataProtection(
                    redundancy=config.storage_redundancy,
                    soft_delete_days=config.soft_delete_days,
                    versioning=config.blob_versioning,
                    protect=config.protect_data,
                ),
                firewall=Firewall(self.network, admin_ips) if self.network else None,
                tags=tags,
            ),
            child,
        )
        # Ingestion and the submitter sized from the fleet the stack declares (workloads/capacity/sizing.py), each
        # override in its place; parse_config refused overrides that cannot carry the load.
        sizing = config.sizing
        self.ingestion = Ingestion(
            f"{name}-ingestion",
            IngestionArgs(
                rg,
                location,
                names.event_hubs_namespace,
                config.aggregation,
                config.shard_count,
                partitions=sizing.partitions,
                retention_days=config.event_hub_retention,
                streaming_units=sizing.streaming_units,
                event_hubs_tier=sizing.event_hubs_tier,
                throughput_units=sizing.throughput_units,
                max_throughput_units=sizing.max_throughput_units,
                processing_units=sizing.processing_units,
                protect=config.protect_data,
                allowed_ip_ranges=(*config.ingest_ip_ranges, *admin_ips) if config.private_network else None,
                tags=tags,
            ),
            child,
        )
        self.registry = Registry(
            f"{name}-registry",
            RegistryArgs(
                rg,
                location,
                names.registry,
                sku=config.registry_sku,
                network=self.network,
                allowed_ip_ranges=admin_ips,
                token_exchanger=token_exchanger,
                tags=tags,
            ),
            child,
        )
        reader, contributor = built_in(roles.STORAGE_BLOB_DATA_READER), built_in(roles.STORAGE_BLOB_DATA_CONTRIBUTOR)
        container, acr_pull = self.storage.container_id, built_in(roles.ACR_PULL)
        registry_id = self.registry.registry.id

        scorer_access = AccessPolicy(
            f"{name}-scorer-access",
            [
                # Training tasks (trainer submit) run on the same pool as the same identity and publish models.
                Grant("write-models", scorer_id.principal_id, contributor, container(Container.MODELS))
                if config.train_on_pool
                else Grant("read-models", scorer_id.principal_id, reader, container(Container.MODELS)),
                # Read its shard's folder, and refile rows found in the wrong folder to their own partition
                # (``workloads/scorer/inputs.py``): a task that cannot write them fails rather than drop them.
                Grant("refile-aggregates", scorer_id.principal_id, contributor, container(Container.AGGREGATES)),
                Grant("write-predictions", scorer_id.principal_id, contributor, container(Container.PREDICTIONS)),
                Grant("write-logs", scorer_id.principal_id, contributor, container(Container.LOGS)),
                Grant("pull", scorer_id.principal_id, acr_pull, registry_id),
            ],
            child,
            # Nodes pull the scorer image as this identity when they start; the submitter's group (below) submits
            # tasks that run as it. Both wait for these grants to take effect (infra/identity.py).
            settle_seconds=GRANT_SETTLE_SECONDS,
        )
        self.batch = BatchCompute(
            f"{name}-batch",
            BatchComputeArgs(
                rg,
                location,
                names.batch_account,
                config.vm_size,
                PoolImage(config.pool_image, config.node_agent_sku),
                config.autoscale,
                config.autoscale_interval_minutes,
                self.registry.images["scorer"].image_name,  # the tag: stable across code deploys (infra/batch.py)
                self.registry.login_server,
                scorer_id.id,
                node_grants=[scorer_access],
                subnet_id=config.subnet_id,
                ephemeral_os_disk=config.ephemeral_os_disk,
                network=self.network,
                tags=tags,
            ),
            child,
        )
        submitter_access = AccessPolicy(
            f"{name}-submitter-access",
            [
                # Planning lists the hour's aggregate folders; it reads no rows and no models.
                Grant("read-aggregates", submitter_id.principal_id, reader, container(Container.AGGREGATES)),
                Grant("write-logs", submitter_id.principal_id, contributor, container(Container.LOGS)),
                Grant("pull", submitter_id.principal_id, acr_pull, registry_id),
                # Built in: jobs and job schedules (data actions) and pools/read, nothing on pools or the account
                # ("Azure Batch Job Submitter", learn.microsoft.com/azure/batch/batch-role-based-access-control).
                Grant(
                    "batch-jobs",
                    submitter_id.principal_id,
                    built_in(roles.BATCH_JOB_SUBMITTER),
                    self.batch.account.id,
                ),
            ],
            child,
            # ACI pulls the submitter image as this identity and runs it once when the group is created.
            settle_seconds=GRANT_SETTLE_SECONDS,
        )
        group_starter = custom_role(
            f"{name}-role-group-starter",
            f"batchscoring {stack} submitter starter",
            self.resource_group.id,
            START_GROUP_ACTIONS,
            opts=child,
        )
        self.scheduler = Scheduler(
            f"{name}-scheduler",
            SchedulerArgs(
                rg,
                location,
                names.submitter_group,
                self.registry.submitter_image,
                self.registry.login_server,
                submitter_id.id,
                # The submitter submits tasks that run as the scorer: both identities' grants come first.
                identity_grants=[submitter_access, scorer_access],
                trigger_identity_id=scheduler_id.id,
                trigger_principal_id=scheduler_id.principal_id,
                starter_role_id=group_starter.id,
                environment={
                    envvars.STORAGE_ACCOUNT_URL: self.storage.blob_endpoint,
                    envvars.AZURE_CLIENT_ID: submitter_id.client_id,
                    envvars.STACK: stack,
                    envvars.BACKEND: "batch",
                    envvars.TASK_INPUT_MIB: str(config.task_input_mib),
                    envvars.SHARD_COUNT: str(config.shard_count),
                    envvars.LATENESS_MINUTES: str(config.lateness_minutes),
                    envvars.RECONCILE_HOURS: str(config.reconcile_hours),
                    envvars.BATCH_ACCOUNT_URL: self.batch.account_endpoint,
                    envvars.BATCH_POOL_ID: self.batch.pool_id,
                    envvars.SCORER_IMAGE: self.registry.scorer_image,
                    envvars.SCORER_IDENTITY_ID: scorer_id.id,
                    envvars.SCORER_CLIENT_ID: scorer_id.client_id,
                    envvars.TASK_MAX_RETRIES: str(config.task_max_retries),
                    envvars.TASK_MAX_WALL_MINUTES: str(config.task_max_wall_minutes),
                    envvars.SKLEARN_VERSION_POLICY: config.sklearn_version_policy,
                    envvars.MODEL_FAMILY: config.model_family,
                    # Absent rather than empty when none, so a reader never has to split "" into [""].
                    **({envvars.TRUSTED_TYPES: ",".join(config.trusted_types)} if config.trusted_types else {}),
                    **(
                        {envvars.APPINSIGHTS_CONNECTION_STRING: self.monitoring.connection_string}
                        if self.monitoring.connection_string is not None
                        else {}
                    ),
                },
                recurrence=Recurrence(
                    config.schedule_frequency, config.schedule_interval, config.time_zone, config.schedule_minute
                ),
                subnet_id=self.network.subnet_id("submitter") if self.network else None,
                network_ready=self.network.ready if self.network else (),
                memory_gb=max(SUBMITTER_MEMORY_FLOOR_GB, sizing.submitter_memory_gb),
                tags=tags,
            ),
            child,
        )
        job_principal = self.ingestion.job_principal_id
        stream_access = AccessPolicy(
            f"{name}-stream-access",
            [
                Grant("read-events", job_principal, built_in(roles.EVENT_HUBS_DATA_RECEIVER), self.ingestion.hub.id),
                Grant("write-aggregates", job_principal, contributor, container(Container.AGGREGATES)),
            ],
            child,
        )
        self.stream_io = StreamJobIO(
            f"{name}-stream",
            StreamJobIOArgs(self.ingestion, self.storage.account_name, grants=[stream_access]),
            child,
        )
        self.access = [scorer_access, submitter_access, stream_access, self.scheduler.access]
        targets = AlertTargets(
            self.ingestion.job.id,
            self.scheduler.workflow.id,
            self.batch.account.id,
            scoring_since=self.scheduler.workflow.created_time,
        )
        metric_rules, log_rules = platform_rules(targets, config.hour_deadline_minutes, config.watermark_alert_minutes)
        self.monitoring.watch(
            Watch(
                action_group_name=names.action_group,
                action_group_short_name=names.action_group_short,
                emails=config.alert_emails,
                webhooks=config.alert_webhooks,
                diagnostics=[
                    Diagnostics("batch", self.batch.account.id, ("ServiceLog", "AuditLog")),
                    Diagnostics("stream-job", self.ingestion.job.id, ("Execution", "Authoring")),
                    Diagnostics("scheduler", self.scheduler.workflow.id, ("WorkflowRuntime",)),
                    Diagnostics(
                        "blobs",
                        self.storage.account.id.apply(lambda account: f"{account}/blobServices/default"),
                        ("StorageRead", "StorageWrite", "StorageDelete"),
                        metrics=("Transaction",),
                    ),
                    Diagnostics("events", self.ingestion.namespace.id, category_groups=("allLogs",)),
                ],
                metric_rules=metric_rules,
                log_rules=log_rules,
                activity_rules=platform_activity_rules(targets),
            )
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
            "log_analytics_workspace_id": self.monitoring.workspace.id,
            "alert_action_group_id": self.monitoring.action_group.id,
        }
        self.register_outputs(self.outputs)
