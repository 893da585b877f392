"""Event Hubs (namespace, hub, consumer group) and the Stream Analytics job that aggregates readings.

The ASA query is generated from the same feature definition the local aggregator uses
(``workloads.common.aggregates``), and its blob output writes the same hour folders
(``workloads.common.layout.ASA_PATH_PATTERN``): the cloud and the local pipeline cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import eventhub, streamanalytics

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
    storage_account_name: pulumi.Input[str]
    aggregation: AggregationSpec
    partitions: int = 4
    retention_days: int = 1
    streaming_units: int = 1
    protect: bool = False
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
            output_start_mode=streamanalytics.OutputStartMode.JOB_START_TIME,
            inputs=[
                streamanalytics.InputArgs(
                    name=INPUT_ALIAS,
                    properties=streamanalytics.StreamInputPropertiesArgs(
                        type="Stream",
                        datasource=streamanalytics.EventHubV2StreamInputDataSourceArgs(
                            type="Microsoft.EventHub/EventHub",
                            authentication_mode=streamanalytics.AuthenticationMode.MSI,
                            service_bus_namespace=self.namespace.name,
                            event_hub_name=self.hub.name,
                            consumer_group_name=self.consumer_group.name,
                        ),
                        serialization=streamanalytics.JsonSerializationArgs(
                            type="Json", encoding=streamanalytics.Encoding.UTF8
                        ),
                    ),
                )
            ],
            outputs=[
                streamanalytics.OutputArgs(
                    name=OUTPUT_ALIAS,
                    datasource=streamanalytics.BlobOutputDataSourceArgs(
                        type="Microsoft.Storage/Blob",
                        authentication_mode=streamanalytics.AuthenticationMode.MSI,
                        storage_accounts=[streamanalytics.StorageAccountArgs(account_name=args.storage_account_name)],
                        container=Container.AGGREGATES.value,
                        path_pattern=ASA_PATH_PATTERN,
                    ),
                    serialization=streamanalytics.ParquetSerializationArgs(type="Parquet"),
                )
            ],
            transformation=streamanalytics.TransformationArgs(
                name="aggregate", query=self.query, streaming_units=args.streaming_units
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.job_principal_id = self.job.identity.apply(lambda i: i.principal_id if i else "")
        self.register_outputs(
            {
                "namespace": self.namespace.name,
                "event_hub": self.hub.name,
                "consumer_group": self.consumer_group.name,
                "job_name": self.job.name,
            }
        )
