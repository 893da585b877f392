"""Event Hubs (namespace, hub, consumer group) and the Stream Analytics job that aggregates readings.

The ASA query is generated from the same feature definition the local aggregator uses
(``workloads.common.aggregates``), and its blob output writes the same hour folders
(``workloads.common.layout.ASA_PATH_PATTERN``): the cloud and the local pipeline cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import eventhub, streamanalytics

from infra import stream_job
from infra.locks import lock
from workloads.common.aggregates import AggregationSpec, asa_query
from workloads.common.layout import ASA_PATH_PATTERN, Container

INPUT_ALIAS = "readings"
OUTPUT_ALIAS = "aggregates"
ASA_MAX_OUT_OF_ORDER_SECONDS = 599  # the service's upper bound


@dataclass
class IngestionArgs:
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    namespace_name: str
    aggregation: AggregationSpec
    partitions: int = 4
    retention_days: int = 1
    streaming_units: int = 1
    protect: bool = False  # protectData: Pulumi protect and a CanNotDelete lock on the namespace
    # privateNetwork: only these public CIDRs (device gateways, operators) and trusted Azure services (the stream
    # job, with its managed identity: "Allow trusted Microsoft services", learn.microsoft.com/azure/event-hubs/
    # event-hubs-ip-filtering) reach the namespace. None: open to any network, Entra ID still required.
    allowed_ip_ranges: tuple[str, ...] | None = None
    tags: dict[str, str] = field(default_factory=dict)


class Ingestion(pulumi.ComponentResource):
    def __init__(self, name: str, args: IngestionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchscoring:infra:Ingestion", name, None, opts)
        tags = {**args.tags, "component": "ingestion"}
        self.namespace = eventhub.Namespace(
            f"{name}-namespace",
            namespace_name=args.namespace_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            sku=eventhub.SkuArgs(name=eventhub.SkuName.STANDARD, tier=eventhub.SkuTier.STANDARD, capacity=1),
            disable_local_auth=True,  # Entra ID only: no SAS keys to leak
            minimum_tls_version=eventhub.TlsVersion.TLS_VERSION_1_2,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        self.hub = eventhub.EventHub(
            f"{name}-hub",
            event_hub_name="readings",
            namespace_name=self.namespace.name,
            resource_group_name=args.resource_group_name,
            partition_count=args.partitions,
            message_retention_in_days=args.retention_days,
            opts=pulumi.ResourceOptions(parent=self.namespace, protect=args.protect),
        )
        if args.protect:
            lock(f"{name}-lock", self.namespace, "Event Hubs: readings not yet aggregated")
        if args.allowed_ip_ranges is not None:
            eventhub.NamespaceNetworkRuleSet(
                f"{name}-firewall",
                namespace_name=self.namespace.name,
                resource_group_name=args.resource_group_name,
                default_action=eventhub.DefaultAction.DENY,
                public_network_access=eventhub.PublicNetworkAccessFlag.ENABLED,
                trusted_service_access_enabled=True,
                ip_rules=[
                    eventhub.NWRuleSetIpRulesArgs(ip_mask=cidr, action=eventhub.NetworkRuleIPAction.ALLOW)
                    for cidr in args.allowed_ip_ranges
                ],
                opts=pulumi.ResourceOptions(parent=self.namespace),
            )
        self.consumer_group = eventhub.ConsumerGroup(
            f"{name}-asa-consumers",
            consumer_group_name="stream-analytics",
            event_hub_name=self.hub.name,
            namespace_name=self.namespace.name,
            resource_group_name=args.resource_group_name,
            opts=pulumi.ResourceOptions(parent=self.hub),
        )
        late = int(args.aggregation.late_tolerance.total_seconds())
        self.query = asa_query(args.aggregation, INPUT_ALIAS, OUTPUT_ALIAS)
        # Declared without inputs and outputs: they authenticate as the job's own (system-assigned) identity,
        # whose grants can only exist once the job does (StreamJobIO adds them after the grants). No
        # `outputStartMode` either: on a create it starts the job at once ("This property should only be
        # utilized when it is desired that the job be started immediately upon creation", StreamingJob
        # outputStartMode, api 2020-03-01), i.e. before its inputs, outputs and rights exist.
        self.job = streamanalytics.StreamingJob(
            f"{name}-job",
            resource_group_name=args.resource_group_name,
            location=args.location,
            identity=streamanalytics.IdentityArgs(type="SystemAssigned"),
            sku=streamanalytics.SkuArgs(name=streamanalytics.SkuName.STANDARD),
            compatibility_level=streamanalytics.CompatibilityLevel.COMPATIBILITY_LEVEL_1_2,
            events_late_arrival_max_delay_in_seconds=late,
            events_out_of_order_max_delay_in_seconds=min(late, ASA_MAX_OUT_OF_ORDER_SECONDS),
            events_out_of_order_policy=streamanalytics.EventsOutOfOrderPolicy.DROP,
            output_error_policy=streamanalytics.OutputErrorPolicy.STOP,
            transformation=streamanalytics.TransformationArgs(
                name="aggregate", query=self.query, streaming_units=args.streaming_units
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, hooks=stream_job.lifecycle_hooks()),
        )
        self.resource_group_name = args.resource_group_name
        self.job_principal_id = self.job.identity.apply(lambda i: i.principal_id if i else "")
        self.register_outputs(
            {
                "namespace": self.namespace.name,
                "event_hub": self.hub.name,
                "consumer_group": self.consumer_group.name,
                "job_name": self.job.name,
            }
        )


@dataclass
class StreamJobIOArgs:
    ingestion: Ingestion
    storage_account_name: pulumi.Input[str]
    grants: Sequence[pulumi.Resource]  # the job identity's role assignments: read the hub, write the aggregates


class StreamJobIO(pulumi.ComponentResource):
    """The job's input and output, and its running state: all after the job identity's grants exist.

    `StreamJobRun` starts the job once both are in place (and stops it first on `pulumi destroy`, before they
    are deleted); the lifecycle hooks on the job, input and output stop it before an update and start it again
    after (infra/stream_job.py).
    """

    def __init__(self, name: str, args: StreamJobIOArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchscoring:infra:StreamJobIO", name, None, opts)
        ingestion, job = args.ingestion, args.ingestion.job
        after_grants = pulumi.ResourceOptions(
            parent=self, depends_on=list(args.grants), hooks=stream_job.lifecycle_hooks()
        )
        self.input = streamanalytics.Input(
            f"{name}-input",
            input_name=INPUT_ALIAS,
            job_name=job.name,
            resource_group_name=ingestion.resource_group_name,
            properties=streamanalytics.StreamInputPropertiesArgs(
                type="Stream",
                datasource=streamanalytics.EventHubV2StreamInputDataSourceArgs(
                    type="Microsoft.EventHub/EventHub",
                    authentication_mode=streamanalytics.AuthenticationMode.MSI,
                    service_bus_namespace=ingestion.namespace.name,
                    event_hub_name=ingestion.hub.name,
                    consumer_group_name=ingestion.consumer_group.name,
                ),
                serialization=streamanalytics.JsonSerializationArgs(
                    type="Json", encoding=streamanalytics.Encoding.UTF8
                ),
            ),
            opts=after_grants,
        )
        self.output = streamanalytics.Output(
            f"{name}-output",
            output_name=OUTPUT_ALIAS,
            job_name=job.name,
            resource_group_name=ingestion.resource_group_name,
            datasource=streamanalytics.BlobOutputDataSourceArgs(
                type="Microsoft.Storage/Blob",
                authentication_mode=streamanalytics.AuthenticationMode.MSI,
                storage_accounts=[streamanalytics.StorageAccountArgs(account_name=args.storage_account_name)],
                container=Container.AGGREGATES.value,
                path_pattern=ASA_PATH_PATTERN,
            ),
            serialization=streamanalytics.ParquetSerializationArgs(type="Parquet"),
            opts=after_grants,
        )
        self.run = stream_job.StreamJobRun(
            f"{name}-run",
            job_id=job.id,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.input, self.output, *args.grants]),
        )
        self.register_outputs({"input": self.input.name, "output": self.output.name})
