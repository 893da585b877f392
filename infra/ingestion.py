"""Event Hubs (namespace, hub, consumer group) and the Stream Analytics job that aggregates readings.

The ASA query is generated from the same feature definition the local aggregator uses
(``workloads.common.aggregates``), and each of its rows carries its folder, computed by the JavaScript twin of
``workloads.common.shards.partition_of`` (deployed as the job's function ``partitionOf``), which the blob output's path
pattern uses (``workloads.common.aggregates.ASA_PATH_PATTERN``): the data decides where a row lands, in the cloud as
locally, never the time the job wrote it.

The azure-native ``StreamingJob`` is create-only (``ignore_changes`` on everything mutable): azure-native updates a
job with a full PUT that fails once its inputs/outputs live apart (pulumi-azure-native#688) and fails on a running
job (#785). Its inputs, outputs, query, streaming units, event policies and tags are owned by ``StreamJobDeployment``
(``infra/stream_job.py``), which writes them over ARM with the job stopped and starts it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi_azure_native import eventhub, streamanalytics

from infra import stream_job
from infra.locks import lock
from workloads.common.aggregates import (
    ASA_PATH_PATTERN,
    PARTITION_UDF_INPUTS,
    PARTITION_UDF_NAME,
    PARTITION_UDF_OUTPUT,
    AggregationSpec,
    asa_query,
)
from workloads.common.layout import Container
from workloads.common.shards import partition_udf

INPUT_ALIAS = "readings"
OUTPUT_ALIAS = "aggregates"
ASA_MAX_OUT_OF_ORDER_SECONDS = 599  # the service's upper bound
TRANSFORMATION_NAME = "aggregate"
# Every StreamingJob input that may change after creation: owned by StreamJobDeployment, ignored by azure-native.
JOB_IGNORED_CHANGES = (
    "transformation",
    "functions",
    "eventsLateArrivalMaxDelayInSeconds",
    "eventsOutOfOrderMaxDelayInSeconds",
    "eventsOutOfOrderPolicy",
    "outputErrorPolicy",
    "compatibilityLevel",
    "sku",
    "tags",
)


@dataclass
class IngestionArgs:
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    namespace_name: str
    aggregation: AggregationSpec
    shard_count: int  # the stack's shardCount: the query computes each row's shard folder with it
    partitions: int = 4
    retention_days: int = 1
    # Namespace capacity, from the fleet's sizing (workloads/capacity/sizing.py, infra/config.py PlatformConfig.sizing):
    # Standard with `throughput_units` and auto-inflate up to `max_throughput_units`, or Premium with
    # `processing_units`.
    event_hubs_tier: str = "Standard"
    throughput_units: int = 1
    max_throughput_units: int = 1
    processing_units: int = 0
    streaming_units: int = 1  # SU V1 steps (1, 3, 6, 12, ...) with sku Standard; infra/config.py refuses others
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
            **_namespace_capacity(args),
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
        self.query = asa_query(args.aggregation, INPUT_ALIAS, OUTPUT_ALIAS, args.shard_count)
        self.streaming_units = args.streaming_units
        # The functions the query calls, in ARM shape (Functions - Create Or Replace, see infra/stream_job.py).
        self.functions: dict[str, Any] = {
            PARTITION_UDF_NAME: stream_job.javascript_udf(partition_udf(), PARTITION_UDF_INPUTS, PARTITION_UDF_OUTPUT)
        }
        # The job's mutable settings, in ARM shape (Streaming Jobs - Update): the job is created with them, and
        # StreamJobDeployment PATCHes them when they change (the job ignores later changes, see below).
        self.settings: dict[str, Any] = {
            "eventsLateArrivalMaxDelayInSeconds": late,
            "eventsOutOfOrderMaxDelayInSeconds": min(late, ASA_MAX_OUT_OF_ORDER_SECONDS),
            "eventsOutOfOrderPolicy": streamanalytics.EventsOutOfOrderPolicy.DROP.value,
            # Stop, not Drop (issue 18; README "Stream job runbook"). The policy governs "only ... data conversion
            # errors that occur when the output event ... does not conform to the schema of the target sink" (not
            # malformed input: unreadable messages are skipped and counted as DeserializationError, whatever the
            # policy). Drop: "Azure Stream Analytics will drop any output event that results in a data conversion
            # error. The dropped events cannot be recovered for reprocessing later" - an aggregate row, i.e. one
            # device's window, lost for good. The API's Stop is what the page calls Retry (the page names Retry and
            # Drop, the API Stop and Drop; the mapping is our reading): the job "retries writing the event
            # indefinitely ... all subsequent events are blocked" - it does not stop; the whole output waits, and the
            # readings wait in Event Hubs for its retention. Nothing is lost while someone acts within it: the
            # stream-job-output-errors alert (ConversionErrors, within ~5 min, infra/alerts.py), stream-job-behind
            # and hour-not-scored tell them, and the runbook recovers from LastOutputEventTime (or drops the one
            # bad row on purpose, counted). A blocked hour is re-scored when it settles; a dropped row is never seen.
            # https://learn.microsoft.com/en-us/azure/stream-analytics/stream-analytics-output-error-policy
            "outputErrorPolicy": streamanalytics.OutputErrorPolicy.STOP.value,
            "tags": tags,
        }
        # Declared without inputs and outputs: they authenticate as the job's own (system-assigned) identity,
        # whose grants can only exist once the job does (StreamJobIO adds them after the grants). No
        # `outputStartMode` either: on a create it starts the job at once ("This property should only be
        # utilized when it is desired that the job be started immediately upon creation", StreamingJob
        # outputStartMode, api 2020-03-01), i.e. before its inputs, outputs and rights exist.
        # Create-only: azure-native would apply a later change with a full PUT that the service refuses
        # (pulumi-azure-native#688: "The streaming job should have at least one input defined", #785: the job
        # runs). StreamJobDeployment applies changes to these instead. `sku` and `compatibilityLevel` are not
        # managed after creation at all: changing them means a new job. The job is created with the functions its query
        # calls beside the query, so that its definition is whole from the start (the docs do not say whether a query
        # calling a missing function is refused when written); StreamJobDeployment PUTs them again and keeps them.
        self.job = streamanalytics.StreamingJob(
            f"{name}-job",
            resource_group_name=args.resource_group_name,
            location=args.location,
            identity=streamanalytics.IdentityArgs(type="SystemAssigned"),
            sku=streamanalytics.SkuArgs(name=streamanalytics.SkuName.STANDARD),
            compatibility_level=streamanalytics.CompatibilityLevel.COMPATIBILITY_LEVEL_1_2,
            events_late_arrival_max_delay_in_seconds=self.settings["eventsLateArrivalMaxDelayInSeconds"],
            events_out_of_order_max_delay_in_seconds=self.settings["eventsOutOfOrderMaxDelayInSeconds"],
            events_out_of_order_policy=self.settings["eventsOutOfOrderPolicy"],
            output_error_policy=self.settings["outputErrorPolicy"],
            transformation=streamanalytics.TransformationArgs(
                name=TRANSFORMATION_NAME, query=self.query, streaming_units=args.streaming_units
            ),
            functions=[_function_args(name, props) for name, props in self.functions.items()],
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=list(JOB_IGNORED_CHANGES)),
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
    """The job's input, output, function, query and settings, applied after the job identity's grants exist, and the job
    running.

    All of it is one ``StreamJobDeployment`` (infra/stream_job.py): it PUTs the input and output over ARM (retrying
    while the grants propagate, pulumi-azure-native#2607), then the function, then the query, and starts the job; on a
    later change it stops the job, writes what changed and starts it again; on ``pulumi destroy`` it stops the job
    first.
    """

    def __init__(self, name: str, args: StreamJobIOArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchscoring:infra:StreamJobIO", name, None, opts)
        ingestion = args.ingestion
        query, streaming_units, settings = ingestion.query, ingestion.streaming_units, ingestion.settings
        functions = ingestion.functions

        def definition(names: dict[str, str]) -> dict[str, Any]:
            return {
                "inputs": {
                    INPUT_ALIAS: stream_job.event_hub_input(names["namespace"], names["hub"], names["consumers"])
                },
                "outputs": {
                    OUTPUT_ALIAS: stream_job.blob_output(names["account"], Container.AGGREGATES.value, ASA_PATH_PATTERN)
                },
                "functions": functions,
                "transformation": stream_job.transformation(TRANSFORMATION_NAME, query, streaming_units),
                "settings": settings,
            }

        names = pulumi.Output.all(
            namespace=ingestion.namespace.name,
            hub=ingestion.hub.name,
            consumers=ingestion.consumer_group.name,
            account=args.storage_account_name,
        )
        self.run = stream_job.StreamJobDeployment(
            f"{name}-run",
            job_id=ingestion.job.id,
            definition=names.apply(definition),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.grants)),
            # A job that never produced output starts at the time its first start was asked for, no earlier than
            # the hub still holds readings (infra/stream_job_client.py, FirstStart).
            input_retention_days=ingestion.hub.message_retention_in_days,
        )
        self.register_outputs({"job_id": self.run.job_id, "last_action": self.run.last_action})


def _namespace_capacity(args: IngestionArgs) -> dict[str, Any]:
    """The namespace's sku and auto-inflate inputs. Standard: capacity is the base throughput units and auto-inflate
    raises them up to the maximum when ingress needs it ("Automatically scale up Azure Event Hubs throughput units",
    learn.microsoft.com/azure/event-hubs/event-hubs-auto-inflate: it never scales down; `pulumi up --refresh` sets
    the base again). Premium: capacity is the processing units; auto-inflate is Standard's only."""
    if args.event_hubs_tier == "Premium":
        return {
            "sku": eventhub.SkuArgs(
                name=eventhub.SkuName.PREMIUM, tier=eventhub.SkuTier.PREMIUM, capacity=args.processing_units
            )
        }
    return {
        "sku": eventhub.SkuArgs(
            name=eventhub.SkuName.STANDARD, tier=eventhub.SkuTier.STANDARD, capacity=args.throughput_units
        ),
        "is_auto_inflate_enabled": True,
        "maximum_throughput_units": args.max_throughput_units,
    }


def _function_args(name: str, properties: dict[str, Any]) -> streamanalytics.FunctionArgs:
    """A function of the job's create request, from the same ARM-shaped ``properties`` the deployment PUTs (azure-native
    flattens ScalarFunctionProperties' ``properties`` and the binding's)."""
    config = properties["properties"]
    binding = config["binding"]
    return streamanalytics.FunctionArgs(
        name=name,
        properties=streamanalytics.ScalarFunctionPropertiesArgs(
            type=properties["type"],
            inputs=[streamanalytics.FunctionInputArgs(data_type=i["dataType"]) for i in config["inputs"]],
            output=streamanalytics.FunctionOutputArgs(data_type=config["output"]["dataType"]),
            binding=streamanalytics.JavaScriptFunctionBindingArgs(
                type=binding["type"], script=binding["properties"]["script"]
            ),
        ),
    )
