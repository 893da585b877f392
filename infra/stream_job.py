"""The Stream Analytics job's mutable definition and run life cycle, owned by one dynamic resource over ARM.

Why not azure-native for all of it: three open pulumi-azure-native issues make the obvious design fail on real Azure.

* #688 https://github.com/pulumi/pulumi-azure-native/issues/688 - azure-native updates a ``StreamingJob`` with a full
  PUT; when inputs and outputs are separate ``Input``/``Output`` resources that PUT carries none, and the service
  refuses it: ``Code="422" Message="The streaming job should have at least one input defined."`` So *any* later change
  of the job resource (query, streaming units, late-arrival settings, tags) fails.
* #785 https://github.com/pulumi/pulumi-azure-native/issues/785 - any update of a running job fails (with an opaque
  error) until the job is stopped; azure-native never stops it.
* #2607 https://github.com/pulumi/pulumi-azure-native/issues/2607 - ASA validates access when it accepts an
  input/output authenticating with the job's managed identity (``Code="BadRequest" Message="Stream Analytics job has
  validation errors: Access to EventHub sb://... is not authorized. ..."``), so an input created right after the
  identity's role assignment can be refused while Azure RBAC propagates.

The design, therefore:

* ``infra/ingestion.py`` declares the azure-native ``StreamingJob`` *create-only*: identity, SKU, compatibility level,
  event policies, transformation and tags at creation, and ``ignore_changes`` on everything that may change later, so
  azure-native never sends the full PUT of #688 (nor updates a running job, #785).
* :class:`StreamJobDeployment` (a dynamic resource, declared after the job identity's grants) owns everything mutable,
  as a ``definition`` in ARM JSON shape (see :func:`event_hub_input`, :func:`blob_output`, :func:`transformation`)::

      {"inputs": {name: <input properties>}, "outputs": {name: <output properties>},
       "functions": {name: <function properties>},
       "transformation": {"name": ..., "query": ..., "streamingUnits": n},
       "settings": {"eventsLateArrivalMaxDelayInSeconds": ..., ..., "tags": {...}}}

  - create: stop (a no-op on the new job, which is Created) -> PUT each input, then each output, retrying the
    authorization-validation refusals of #2607 with backoff for up to ``grant_timeout`` (10 minutes: RBAC) -> PUT each
    function -> PUT the transformation -> start (CustomTime at the first start's recorded time on a job that never
    produced output, see below).
  - update, when the definition changed: stop (waiting out Starting/Stopping/...) -> PATCH the job with the changed
    settings -> PUT the changed inputs, outputs and functions -> PUT the transformation if it changed -> DELETE inputs,
    outputs and functions no longer defined -> start (LastOutputEventTime once the job has produced output: nothing
    lost). New inputs and functions go in before the query that may read or call them, removed ones go after the query
    that stopped using them; a changed function (its script) is the same stop, PUT, start.
  - update when only the job was found idle (``diff`` reads its state: stopped by hand, failed, or left stopped by a
    failed update): start it. Every ``pulumi up`` leaves the job running.
  - delete: stop the job (a job already gone counts as stopped); its inputs, outputs, functions and transformation are
    deleted with the job by azure-native.
  - never a replacement; a new job id (azure-native replaced the job) gets the full create sequence.

* :class:`StreamJobFirstStart` (a second, tiny dynamic resource, declared by :class:`StreamJobDeployment` before
  itself) records, in its own Pulumi state, the time the deployment first asked this job to start. Every start of a
  job that has never produced output - the first, a retry by a later ``pulumi up`` after it failed, one after a
  config change before the first output - is CustomTime at that time (bounded by the Event Hubs retention), never
  JobStartTime, so no reading sent since is lost (infra/stream_job_client.py, ``FirstStart``, for the documented
  rules). Why a resource of its own: a Python dynamic provider's failed ``create`` leaves nothing in state (the
  provider process answers the engine's Create with an error, pulumi/dynamic/__main__.py ``_abort_with_traceback``;
  there is no partial-state result as native providers have), so a time recorded by the deployment's own create would
  be lost with the very failure it is for. The marker's create cannot fail, is saved before the deployment's create
  runs, and is replaced only with the job (a new job id).

Everything talks to ARM through :class:`StreamJobClient` on azure-core/azure-mgmt-core, so retries (429/5xx,
``Retry-After``) and long-running-operation polling are the SDK's own; only the job's state machine and the grant
retry are ours. Its credential is the one azure-native uses (:func:`deployer_credential`).

Azure behaviour relied on, and where it is documented (Microsoft Learn pages unless said otherwise; the REST spec is
https://github.com/Azure/azure-rest-api-specs/tree/main/specification/streamanalytics/resource-manager/Microsoft.StreamAnalytics/stable/2020-03-01):

* *Inputs - Create Or Replace*: ``PUT .../streamingjobs/{job}/inputs/{name}?api-version=2020-03-01`` with body
  ``{"properties": {"type": "Stream", "datasource": {"type": "Microsoft.EventHub/EventHub", "properties":
  {serviceBusNamespace, eventHubName, consumerGroupName, authenticationMode}}, "serialization": {"type": "Json",
  "properties": {"encoding": "UTF8"}}}}``; 200 (replaced) or 201 (created), synchronous (inputs.json:
  EventHubV2StreamInputDataSource, JsonSerialization; AuthenticationMode Msi|UserToken|ConnectionString in
  common/v1/definitions.json). https://learn.microsoft.com/en-us/rest/api/streamanalytics/2020-03-01/inputs/create-or-replace
* *Outputs - Create Or Replace*: ``PUT .../outputs/{name}`` with ``{"properties": {"datasource": {"type":
  "Microsoft.Storage/Blob", "properties": {storageAccounts: [{accountName}], container, pathPattern,
  authenticationMode}}, "serialization": {"type": "Parquet", "properties": {}}}}``; 200 or 201 (outputs.json:
  BlobOutputDataSource, ParquetSerialization; ``timeWindow``/``sizeWindow`` optional and left out).
  https://learn.microsoft.com/en-us/rest/api/streamanalytics/2020-03-01/outputs/create-or-replace
* *Transformations - Create Or Replace*: ``PUT .../transformations/{name}`` with ``{"properties": {"query": ...,
  "streamingUnits": n}}``; 200 or 201. The job's ``transformation`` "cannot be modify via a PATCH operation. You must
  use the PATCH API available for the individual transformation" (streamingjobs.json).
  https://learn.microsoft.com/en-us/rest/api/streamanalytics/2020-03-01/transformations/create-or-replace
* *Streaming Jobs - Update*: ``PATCH .../streamingjobs/{job}`` "can be used to partially update (ie. update one or two
  properties) a streaming job without affecting the rest the job definition"; body ``{"properties": {...changed
  settings}, "tags": {...}}`` (tags are the tracked resource's, beside ``properties``); 200, synchronous.
  https://learn.microsoft.com/en-us/rest/api/streamanalytics/2020-03-01/streaming-jobs/update
* *Inputs - Delete* / *Outputs - Delete*: ``DELETE .../inputs/{name}``; 200, or 204 when it does not exist.
* *Functions - Create Or Replace*: ``PUT .../streamingjobs/{job}/functions/{name}?api-version=2020-03-01`` with body
  ``{"properties": {"type": "Scalar", "properties": {"inputs": [{"dataType": ...}, ...], "output": {"dataType": ...},
  "binding": {"type": "Microsoft.StreamAnalytics/JavascriptUdf", "properties": {"script": ...}}}}}``; 200 or 201
  (functions.json: Function, ScalarFunctionProperties - discriminator "Scalar" - whose flattened ``properties`` is a
  ScalarFunctionConfiguration of ``inputs``/``output``/``binding``; FunctionInput/FunctionOutput ``dataType`` is "the
  (Azure Stream Analytics supported) data type" of the parameter, i.e. bigint, float, nvarchar(max), datetime, record,
  array; JavaScriptFunctionBinding's ``script`` is "The JavaScript code containing a single function definition. For
  example: 'function (x, y) { return x + y; }'" - an anonymous function, as ``workloads/common/partition_udf.js`` is;
  the spec's example Function_Create_JavaScript.json sends exactly this shape). *Functions - Delete*: ``DELETE
  .../functions/{name}``; 200, or 204 "The function does not exist". The optional ``isConfigurationParameter`` of an
  input is left out (default false).
  https://learn.microsoft.com/en-us/rest/api/streamanalytics/2020-03-01/functions/create-or-replace
* *JavaScript user-defined functions in Azure Stream Analytics*: a JavaScript UDF is a "stateless, compute-only scalar
  function"; "you can use the function anywhere in the query, like a built-in scalar function", called with the
  ``UDF.``/``udf.`` prefix before its alias (both spellings appear in Microsoft's examples). Type conversion, ASA to
  JavaScript: bigint -> Number ("can only represent integers up to precisely 2^53": a shard count is at most 65536),
  DateTime -> Date ("JavaScript only supports milliseconds": the hour is all we read, with getUTC*), nvarchar(MAX) ->
  String, NULL -> Null; JavaScript to ASA: String -> nvarchar(MAX). "JavaScript runtime errors are considered fatal"
  (the job fails, Activity log): the UDF throws on nothing it can be given. Functions that return a different result
  on the same events (Date.now, Math.random) should be avoided, as restarts replay them: the UDF is a pure function of
  its arguments. https://learn.microsoft.com/en-us/azure/stream-analytics/stream-analytics-javascript-user-defined-functions
* *Azure Stream Analytics custom blob output partitioning*: a ``{field}`` in the blob output's path pattern partitions
  the output by that column's value; "The partition key ... may contain any character that's accepted for blob names
  ... you can use certain characters to create a hierarchy of files", e.g. ``CONCAT(name, "/", id) AS nameid``, which
  is how one field makes ``yyyy/MM/dd/HH/<shard>``; "The partition key must be NVARCHAR(MAX), BIGINT, FLOAT, or BIT
  (1.2 compatibility level or higher)" (ours: the UDF's String, on a 1.2 job). Limitations: "Only one custom partition
  key is permitted in the path pattern" (we use exactly one and no {date}/{time}); "Partition keys are case
  insensitive" (ours differ in digits, never only in case); "expressions can't be used as partition keys" (hence a
  computed column); "When an input stream consists of records with a partition key cardinality under 8,000, the
  records are appended to existing blobs ... If the cardinality is over 8,000, there's no guarantee existing blobs will
  be written to" - see infra/config.py (``shardCount`` is bounded so that the keys written at once stay under it). The
  page's example notes "each record in the blob has a client_id column matching the folder name": the partition column
  is written into the rows too (readers ignore it; they tolerate extra columns either way).
  https://learn.microsoft.com/en-us/azure/stream-analytics/stream-analytics-custom-path-patterns-blob-storage-output
* *Blob storage and Azure Data Lake Gen2 output from Azure Stream Analytics*: "You can use custom blob partitioning to
  specify one custom {field} name from your event data to partition blobs. The field name is alphanumeric and can
  include spaces, hyphens, and underscores"; "Field names aren't case-sensitive"; a new blob is created "If the output
  is partitioned by a custom field, and a new blob is created per partition key if it does not exist" and "where the
  partition key cardinality exceeds 8,000"; "For Parquet, every batch will create a new file" (so a shard folder holds
  one file per output batch that had rows of that shard: readers read every blob of a folder, never just one).
  https://learn.microsoft.com/en-us/azure/stream-analytics/blob-storage-azure-data-lake-gen2-output
* *Streaming Jobs - Start* (api 2020-03-01): ``POST .../streamingjobs/{job}/start?api-version=2020-03-01`` with body
  ``{"outputStartMode": "JobStartTime" | "CustomTime" | "LastOutputEventTime"}`` (``outputStartTime`` only with
  CustomTime); answers 200 (started) or 202 (initiated).
  https://learn.microsoft.com/en-us/rest/api/streamanalytics/2020-03-01/streaming-jobs/start
* *Streaming Jobs - Stop* (api 2020-03-01): ``POST .../stop``, 200 or 202.
  https://learn.microsoft.com/en-us/rest/api/streamanalytics/2020-03-01/streaming-jobs/stop
* Both are ``x-ms-long-running-operation: true`` in the service's OpenAPI spec (streamingjobs.json), which also
  documents *Get*'s ``properties.jobState`` and ``properties.lastOutputEventTime`` ("the last output event time of the
  streaming job or null indicating that output has not yet been produced").
  https://learn.microsoft.com/en-us/rest/api/streamanalytics/2020-03-01/streaming-jobs/get
* *How to start an Azure Stream Analytics job*: "When last stopped" (LastOutputEventTime) "is available when the job
  was previously started, but was stopped manually or failed" and restarts from the last output time "so no data is
  lost" (a few duplicates are possible); JobStartTime ("Now") is the default.
  https://learn.microsoft.com/en-us/azure/stream-analytics/start-job
* *Azure Stream Analytics job states*: Degraded means transient errors, and the service "will immediately try to
  recover ... and return to a Running state". https://learn.microsoft.com/en-us/azure/stream-analytics/job-states
  The full value set (Created, Starting, Running, Stopping, Stopped, Deleting, Failed, Degraded, Restarting, Scaling)
  is the SDKs' JobState enum: https://learn.microsoft.com/en-us/javascript/api/@azure/arm-streamanalytics/knownjobstate
* A running job's inputs/outputs cannot be changed, *Rotate login credentials for inputs and outputs of a Stream
  Analytics job*: "You must stop the job before updating the credentials, you can't replace the credentials while the
  job is running". https://learn.microsoft.com/en-us/azure/stream-analytics/stream-analytics-login-credentials-inputs-outputs
* *Track asynchronous Azure operations*: 202 with ``Azure-AsyncOperation`` and/or ``Location``, ``Retry-After``;
  ARMPolling implements exactly that. https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/async-operations
* *Troubleshoot Azure RBAC*: "When you assign roles or remove role assignments, it can take up to 10 minutes for
  changes to take effect" - hence the bounded retries of an input/output PUT and of a start right after the grants.
  https://learn.microsoft.com/en-us/azure/role-based-access-control/troubleshooting
* azure-native authenticates as a service principal from ``ARM_CLIENT_ID``/``ARM_TENANT_ID``/``ARM_CLIENT_SECRET``
  (or the Azure CLI, OIDC, managed identity); azure-identity's ``DefaultAzureCredential`` reads ``AZURE_*`` instead:
  https://www.pulumi.com/registry/packages/azure-native/installation-configuration/
  https://learn.microsoft.com/en-us/python/api/azure-identity/azure.identity.defaultazurecredential

Not found in the docs, so handled defensively: the exact status and text of the authorization-validation refusal of
an input/output PUT (#2607 shows 400 BadRequest "Stream Analytics job has validation errors: Access to EventHub ... is
not authorized"; for a blob output we assume a similar "not authorized" text: both are matched, 400 or 403, while
ARM's own ``AuthorizationFailed`` - the deployer lacking rights - is not retried); that an input/output/query change
is refused while the job runs (we always stop first; the spec's separate ``/scale`` action suggests SUs could change
live); that PATCH and PUT are refused while the job is Starting/Stopping (we wait those out first); the status code of
a start/stop sent while another is in progress (409 "The Stream Analytics job is not in a valid state to perform this
operation" is what users report); which LRO headers the service actually sends; and how a start that fails shows up
(a failed operation or a Failed job: both are retried).

Not found in the docs about the partition function, so not depended on: whether the service validates a query's
function calls when the job or its transformation is written (the job is created with the function beside the query,
infra/ingestion.py, and the function is always PUT before a query that calls it, so either way it exists first);
whether ``System.Timestamp()`` may be passed to a UDF in the SELECT of a grouped query (the docs only say a UDF can be
used anywhere a built-in scalar function can, and ``System.Timestamp()`` is the window end there); over which time span
the "partition key cardinality" of the 8,000 rule is counted (we bound the keys written at once; if it is counted over
the job's life, every long-running job exceeds it, and what the docs say happens then - new blobs instead of appends -
is what Parquet output does per batch anyway); the UDF's cost per row at high event rates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import pulumi
import pulumi.dynamic
from azure.core.exceptions import ClientAuthenticationError

from infra.stream_job_client import (
    BLOB,
    EVENT_HUB_V2,
    JAVASCRIPT_UDF,
    FirstStart,
    StreamJobAccessDeniedError,
    StreamJobClient,
    format_start_time,
    parse_start_time,
)

_T = TypeVar("_T")


# --- the definition: ARM JSON shapes (api 2020-03-01, see the module docstring) ------------------------------------

MSI: Final = "Msi"


def event_hub_input(namespace: str, event_hub: str, consumer_group: str) -> dict[str, Any]:
    """The ``properties`` of a stream input from an Event Hub, read as the job's managed identity, JSON in UTF-8."""
    return {
        "type": "Stream",
        "datasource": {
            "type": EVENT_HUB_V2,
            "properties": {
                "serviceBusNamespace": namespace,
                "eventHubName": event_hub,
                "consumerGroupName": consumer_group,
                "authenticationMode": MSI,
            },
        },
        "serialization": {"type": "Json", "properties": {"encoding": "UTF8"}},
    }


def blob_output(account: str, container: str, path_pattern: str) -> dict[str, Any]:
    """The ``properties`` of a blob output written as the job's managed identity, in Parquet.

    No ``timeWindow``/``sizeWindow``: Parquet output then batches on the documented defaults (at most 1 minute), which
    the settle rule of the hourly scoring relies on (infra/config.py, OUTPUT_DELAY_MINUTES).
    """
    return {
        "datasource": {
            "type": BLOB,
            "properties": {
                "storageAccounts": [{"accountName": account}],
                "container": container,
                "pathPattern": path_pattern,
                "authenticationMode": MSI,
            },
        },
        "serialization": {"type": "Parquet", "properties": {}},
    }


def javascript_udf(script: str, inputs: Sequence[str], output: str) -> dict[str, Any]:
    """The ``properties`` of a scalar JavaScript user-defined function: its parameters' and result's ASA data types
    (e.g. ``nvarchar(max)``, ``datetime``, ``bigint``) and its script, one anonymous ``function (...) {...}``."""
    return {
        "type": "Scalar",
        "properties": {
            "inputs": [{"dataType": data_type} for data_type in inputs],
            "output": {"dataType": output},
            "binding": {"type": JAVASCRIPT_UDF, "properties": {"script": script}},
        },
    }


def transformation(name: str, query: str, streaming_units: int) -> dict[str, Any]:
    """The definition's ``transformation``: its name (the sub-resource's) and its ARM ``properties``."""
    return {"name": name, "query": query, "streamingUnits": streaming_units}


# --- what to apply: the difference between two definitions ---------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """The ARM writes that turn what was applied into ``definition``, in the order they are sent."""

    definition: Mapping[str, Any]
    settings: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    transformation: bool = False
    removed_inputs: tuple[str, ...] = ()
    removed_outputs: tuple[str, ...] = ()
    removed_functions: tuple[str, ...] = ()

    @classmethod
    def full(cls, definition: Mapping[str, Any]) -> Plan:
        """Everything the job lacks after azure-native created it: inputs, outputs, functions (PUT again, in case the
        job was created without them), the transformation. Settings are not sent: azure-native created the job with
        them (from the same values, infra/ingestion.py)."""
        return cls(
            definition,
            inputs=tuple(definition.get("inputs") or {}),
            outputs=tuple(definition.get("outputs") or {}),
            functions=tuple(definition.get("functions") or {}),
            transformation=True,
        )

    @classmethod
    def between(cls, old: Mapping[str, Any], new: Mapping[str, Any]) -> Plan:
        """Only what changed: settings that differ, inputs/outputs/functions that differ or are new or gone, the
        transformation if it differs. A setting removed from the definition is left as it is (PATCH cannot unset)."""
        old_settings, new_settings = old.get("settings") or {}, new.get("settings") or {}

        def changed(kind: str) -> tuple[str, ...]:
            olds, news = old.get(kind) or {}, new.get(kind) or {}
            return tuple(name for name, props in news.items() if olds.get(name) != props)

        def removed(kind: str) -> tuple[str, ...]:
            news = new.get(kind) or {}
            return tuple(name for name in old.get(kind) or {} if name not in news)

        return cls(
            new,
            settings={k: v for k, v in new_settings.items() if old_settings.get(k) != v},
            inputs=changed("inputs"),
            outputs=changed("outputs"),
            functions=changed("functions"),
            transformation=old.get("transformation") != new.get("transformation"),
            removed_inputs=removed("inputs"),
            removed_outputs=removed("outputs"),
            removed_functions=removed("functions"),
        )

    @property
    def empty(self) -> bool:
        return not (
            self.settings
            or self.inputs
            or self.outputs
            or self.functions
            or self.transformation
            or self.removed_inputs
            or self.removed_outputs
            or self.removed_functions
        )

    def apply(self, client: StreamJobClient, job_id: str, first_start: FirstStart | None = None) -> list[str]:
        """Stop the job, write the changes, start it again (at ``first_start`` if it never produced output);
        returns what was done, for the log and the state."""
        done: list[str] = []
        if not self.empty:
            done.append(str(client.stop(job_id)))
            if self.settings:
                client.update_settings(job_id, self.settings)
                done.append(f"patched {','.join(sorted(self.settings))}")
            for name in self.inputs:
                client.put_input(job_id, name, self.definition["inputs"][name])
                done.append(f"put input {name}")
            for name in self.outputs:
                client.put_output(job_id, name, self.definition["outputs"][name])
                done.append(f"put output {name}")
            for name in self.functions:  # before the query that calls it
                client.put_function(job_id, name, self.definition["functions"][name])
                done.append(f"put function {name}")
            if self.transformation:
                spec = dict(self.definition["transformation"])
                name = str(spec.pop("name"))
                client.put_transformation(job_id, name, spec)
                done.append(f"put transformation {name}")
            for name in self.removed_inputs:
                client.delete_input(job_id, name)
                done.append(f"deleted input {name}")
            for name in self.removed_outputs:
                client.delete_output(job_id, name)
                done.append(f"deleted output {name}")
            for name in self.removed_functions:  # after the query that stopped calling it
                client.delete_function(job_id, name)
                done.append(f"deleted function {name}")
        done.append(str(client.ensure_running(job_id, first_start)))
        return done


# --- the factory every Pulumi entry point uses (tests replace it) -------------------------------------------------


def default_client() -> StreamJobClient:
    """A client with the deployer's credential (:func:`deployer_credential`), logging through Pulumi."""
    return StreamJobClient(log=pulumi.log.info)


client_factory: Callable[[], StreamJobClient] = default_client
"""Module-level so the dynamic provider (which Pulumi pickles) holds no client or credential."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


wall_clock: Callable[[], datetime] = _utc_now
"""When :class:`StreamJobFirstStart` records a first start (module-level: tests replace it)."""


def _with_client(action: Callable[[StreamJobClient], _T]) -> _T:
    with client_factory() as client:
        try:
            return action(client)
        except ClientAuthenticationError as err:  # no token at all: no identity found, or its secret is wrong
            raise StreamJobAccessDeniedError(
                f"Could not get an ARM token for the Stream Analytics job: {err.message}. {client.access_help()}"
            ) from err


# --- the dynamic resource ----------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Props as the program wrote them: the engine hands numbers back as floats (protobuf), ARM wants integers."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _first_start(props: Mapping[str, Any]) -> FirstStart | None:
    """The first start's recorded time and the input's retention, from the deployment's props (absent in the state
    of a deployment made before they existed: such a job has started before, or starts at JobStartTime)."""
    requested = props.get("first_start_time")
    if not requested:
        return None
    days = props.get("input_retention_days")
    retention = timedelta(days=float(days)) if days else None
    return FirstStart(parse_start_time(str(requested)), retention)


def _outs(job_id: str, definition: Any, props: Mapping[str, Any], done: list[str]) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "definition": definition,
        "first_start_time": props.get("first_start_time"),
        "input_retention_days": _plain(props.get("input_retention_days")),
        "last_action": "; ".join(done),
    }


class StreamJobDeploymentProvider(pulumi.dynamic.ResourceProvider):
    """Owns the job's inputs, outputs, functions, transformation and settings, and keeps it running. Stateless: Pulumi
    pickles it, by reference to this importable module, and the provider process imports ``infra.stream_job``."""

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        job_id, definition, first_start = str(props["job_id"]), _plain(props["definition"]), _first_start(props)
        done = _with_client(lambda client: Plan.full(definition).apply(client, job_id, first_start))
        return pulumi.dynamic.CreateResult(f"{job_id}/deployment", _outs(job_id, definition, props, done))

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        """Never a replacement. An update when the definition or the job changed, or when the job is found idle
        (stopped by hand, failed, or left stopped by a failed update): `pulumi up` is what leaves it running."""
        job_id = _news.get("job_id")
        if _olds.get("job_id") != job_id or _plain(_olds.get("definition")) != _plain(_news.get("definition")):
            return pulumi.dynamic.DiffResult(changes=True, replaces=[], delete_before_replace=False)
        status = _with_client(lambda client: client.get(str(job_id)))
        return pulumi.dynamic.DiffResult(changes=status.idle, replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        job_id, definition, first_start = str(_news["job_id"]), _plain(_news["definition"]), _first_start(_news)
        previous = _olds.get("definition") if _olds.get("job_id") == job_id else None
        plan = Plan.full(definition) if previous is None else Plan.between(_plain(previous), definition)
        done = _with_client(lambda client: plan.apply(client, job_id, first_start))
        return pulumi.dynamic.UpdateResult(_outs(job_id, definition, _news, done))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        job_id = str(_props["job_id"])
        _with_client(lambda client: client.stop(job_id, missing_ok=True))


class StreamJobFirstStartProvider(pulumi.dynamic.ResourceProvider):
    """Records when the deployment first asked a job to start; replaced with the job (a new id), never updated."""

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        job_id = str(props["job_id"])
        outs = {"job_id": job_id, "requested_at": format_start_time(wall_clock())}
        return pulumi.dynamic.CreateResult(f"{job_id}/first-start", outs)

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        """Only a new job gets a new time: a re-run of ``pulumi up`` must keep the first one (that is the point)."""
        if _olds.get("job_id") != _news.get("job_id"):
            return pulumi.dynamic.DiffResult(changes=True, replaces=["job_id"], delete_before_replace=False)
        return pulumi.dynamic.DiffResult(changes=False, replaces=[], delete_before_replace=False)


class StreamJobFirstStart(pulumi.dynamic.Resource, module="batchscoring", name="StreamJobFirstStart"):
    """The time the deployment first asked ``job_id`` to start, in Pulumi state (see the module docstring)."""

    job_id: pulumi.Output[str]
    requested_at: pulumi.Output[str]

    def __init__(self, name: str, job_id: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(StreamJobFirstStartProvider(), name, {"job_id": job_id, "requested_at": None}, opts)


class StreamJobDeployment(pulumi.dynamic.Resource, module="batchscoring", name="StreamJobDeployment"):
    """The job's mutable definition, applied over ARM, and the job running. Declare it ``depends_on`` the job
    identity's role grants: its create PUTs inputs/outputs that authenticate as that identity.

    It declares its :class:`StreamJobFirstStart` (``<name>-first-start``, beside it) and starts a job that never
    produced output at that recorded time, no earlier than ``input_retention_days`` (the Event Hub's
    ``messageRetentionInDays``) allow. On ``pulumi destroy`` it is deleted before what it depends on, so the job is
    stopped before the grants go.
    """

    job_id: pulumi.Output[str]
    definition: pulumi.Output[dict[str, Any]]
    first_start_time: pulumi.Output[str]
    input_retention_days: pulumi.Output[float | None]
    last_action: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        job_id: pulumi.Input[str],
        definition: pulumi.Input[Mapping[str, Any]],
        opts: pulumi.ResourceOptions | None = None,
        input_retention_days: pulumi.Input[float | None] | None = None,
    ) -> None:
        marker_opts = pulumi.ResourceOptions(parent=opts.parent) if opts is not None and opts.parent else None
        self.first_start = StreamJobFirstStart(f"{name}-first-start", job_id, marker_opts)
        props = {
            "job_id": job_id,
            "definition": definition,
            "first_start_time": self.first_start.requested_at,
            "input_retention_days": input_retention_days,
            "last_action": None,
        }
        # Explicit as well: an input that happens to serialize to nothing carries no dependency (pulumi rpc.py).
        after = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[self.first_start]))
        super().__init__(StreamJobDeploymentProvider(), name, props, after)
