"""Each component's real resource inputs, as the Azure provider would receive them."""

from __future__ import annotations

import json
from pathlib import Path

from infra.autoscale import autoscale_formula
from infra.config import parse_config
from infra.ingestion import INPUT_ALIAS, OUTPUT_ALIAS
from infra.scheduler import Recurrence, workflow_definition
from infra.stream_job import Plan, StreamJobDeploymentProvider
from tests.infra.conftest import SUBSCRIPTION, TENANT, Deploy, Exchanges
from workloads.common import envvars
from workloads.common.aggregates import asa_query
from workloads.common.shards import partition_udf

ROOT = Path(__file__).resolve().parents[2]
SECRET_SIG, SECRET_MARK = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"  # Pulumi's wire format
STORAGE, CONTAINER = "azure-native:storage:StorageAccount", "azure-native:storage:BlobContainer"
POOL, ACCOUNT = "azure-native:batch:Pool", "azure-native:batch:BatchAccount"
JOB, WORKFLOW = "azure-native:streamanalytics:StreamingJob", "azure-native:logic:Workflow"
DEPLOYMENT = "pulumi-python:dynamic/batchscoring:StreamJobDeployment"
GROUP, IMAGE = "azure-native:containerinstance:ContainerGroup", "docker:index/image:Image"
ASSIGNMENT, IDENTITY = "azure-native:authorization:RoleAssignment", "azure-native:managedidentity:UserAssignedIdentity"


def test_storage_is_private_https_only_and_keyless(deploy: Deploy) -> None:
    mocks = deploy().mocks
    account = mocks.inputs(STORAGE)
    assert account["enableHttpsTrafficOnly"] is True
    assert account["minimumTlsVersion"] == "TLS1_2"
    assert account["allowBlobPublicAccess"] is False
    assert account["allowSharedKeyAccess"] is False
    assert account["defaultToOAuthAuthentication"] is True
    assert account["kind"] == "StorageV2"
    assert 3 <= len(account["accountName"]) <= 24 and account["accountName"].isalnum()
    containers = {c.inputs["containerName"]: c.inputs for c in mocks.of_type(CONTAINER)}
    assert sorted(containers) == ["aggregates", "logs", "models", "predictions"]
    assert {c["publicAccess"] for c in containers.values()} == {"None"}


def test_lifecycle_expires_time_partitioned_data_but_never_models(deploy: Deploy) -> None:
    mocks = deploy(aggregatesRetentionDays=7, logsRetentionDays=14).mocks
    rules = mocks.inputs("azure-native:storage:ManagementPolicy")["policy"]["rules"]
    days = {
        r["definition"]["filters"]["prefixMatch"][0]: r["definition"]["actions"]["baseBlob"]["delete"][
            "daysAfterModificationGreaterThan"
        ]
        for r in rules
    }
    assert days == {"aggregates/": 7, "logs/": 14, "predictions/": 365}


def test_data_resources_are_protected_only_when_the_stack_says_so(deploy: Deploy) -> None:
    unprotected = deploy().platform
    assert not unprotected.storage.account._protect  # type: ignore[attr-defined]
    protected = deploy(protectData=True, alertEmails=["ops@contoso.com"], eventHubPartitions=4).platform
    for resource in (
        protected.storage.account,
        *protected.storage.containers.values(),
        protected.ingestion.namespace,
        protected.ingestion.hub,
    ):
        assert resource._protect  # type: ignore[attr-defined]
    assert not protected.batch.pool._protect  # type: ignore[attr-defined]


def test_event_hubs_use_entra_id_only(deploy: Deploy) -> None:
    mocks = deploy(eventHubPartitions=8).mocks
    namespace = mocks.inputs("azure-native:eventhub:Namespace")
    assert namespace["disableLocalAuth"] is True and namespace["minimumTlsVersion"] == "1.2"
    assert mocks.inputs("azure-native:eventhub:EventHub")["partitionCount"] == 8
    assert mocks.inputs("azure-native:eventhub:ConsumerGroup")["consumerGroupName"] == "stream-analytics"


def test_stream_analytics_query_and_output_match_the_local_aggregator(deploy: Deploy) -> None:
    mocks = deploy(windowMinutes=10, lateToleranceSeconds=120, streamingUnits=3, shardCount=32).mocks
    job = mocks.inputs(JOB)
    config = parse_config({"windowMinutes": 10, "lateToleranceSeconds": 120})
    query = asa_query(config.aggregation, INPUT_ALIAS, OUTPUT_ALIAS, 32)
    assert "TumblingWindow(second, 600)" in query
    # Each row's folder, from the stack's shard count: the partition column the output's path pattern names.
    assert "udf.partitionOf([device_id], System.Timestamp(), 32) AS [partition_path]" in query
    # The job is created with the query, the function it calls and the settings, then only the deployment changes
    # them (create-only job, infra/ingestion.py). No inputs, outputs or start mode on the job, which would start it
    # at creation.
    assert job["transformation"] == {"name": "aggregate", "query": query, "streamingUnits": 3}
    assert job["functions"] == [
        {
            "name": "partitionOf",
            "properties": {
                "type": "Scalar",
                "inputs": [{"dataType": "nvarchar(max)"}, {"dataType": "datetime"}, {"dataType": "bigint"}],
                "output": {"dataType": "nvarchar(max)"},
                "binding": {"type": "Microsoft.StreamAnalytics/JavascriptUdf", "script": partition_udf()},
            },
        }
    ]
    assert job["identity"]["type"] == "SystemAssigned"
    assert job["eventsLateArrivalMaxDelayInSeconds"] == 120 and job["eventsOutOfOrderPolicy"] == "Drop"
    assert "inputs" not in job and "outputs" not in job and "outputStartMode" not in job

    # Everything mutable is the dynamic resource's definition, in ARM shape (infra/stream_job.py).
    run = mocks.inputs(DEPLOYMENT)
    assert run["job_id"] == f"/mock/{JOB}/batchscoring-ingestion-job"
    definition = run["definition"]
    assert sorted(definition) == ["functions", "inputs", "outputs", "settings", "transformation"]
    assert definition["transformation"] == {"name": "aggregate", "query": query, "streamingUnits": 3}
    assert definition["transformation"]["query"] == job["transformation"]["query"]
    # The function the query calls, as Functions - Create Or Replace takes it: the same as the job was created with.
    assert definition["functions"] == {
        "partitionOf": {
            "type": "Scalar",
            "properties": {
                "inputs": [{"dataType": "nvarchar(max)"}, {"dataType": "datetime"}, {"dataType": "bigint"}],
                "output": {"dataType": "nvarchar(max)"},
                "binding": {
                    "type": "Microsoft.StreamAnalytics/JavascriptUdf",
                    "properties": {"script": partition_udf()},
                },
            },
        }
    }
    namespace, hub = mocks.one("azure-native:eventhub:Namespace"), mocks.one("azure-native:eventhub:EventHub")
    assert definition["inputs"] == {
        INPUT_ALIAS: {
            "type": "Stream",
            "datasource": {
                "type": "Microsoft.EventHub/EventHub",
                "properties": {
                    "serviceBusNamespace": namespace.outputs["name"],
                    "eventHubName": hub.outputs["name"],
                    "consumerGroupName": "stream-analytics",
                    "authenticationMode": "Msi",
                },
            },
            "serialization": {"type": "Json", "properties": {"encoding": "UTF8"}},
        }
    }
    (sink_name,) = definition["outputs"]
    sink = definition["outputs"][sink_name]
    assert sink_name == OUTPUT_ALIAS
    assert sink["datasource"] == {
        "type": "Microsoft.Storage/Blob",
        "properties": {
            "storageAccounts": [{"accountName": mocks.inputs(STORAGE)["accountName"]}],
            "container": "aggregates",
            # Custom field partitioning on the query's partition column: the data names the folder.
            "pathPattern": "{partition_path}",
            "authenticationMode": "Msi",
        },
    }
    assert sink["serialization"] == {"type": "Parquet", "properties": {}}
    # The settle rule (infra/config.py, OUTPUT_DELAY_MINUTES) relies on Parquet's documented default batching
    # window of 1 minute: a longer timeWindow here would delay an hour's last window past the settle time.
    assert "timeWindow" not in sink and "sizeWindow" not in sink
    assert definition["settings"] == {
        "eventsLateArrivalMaxDelayInSeconds": 120,
        "eventsOutOfOrderMaxDelayInSeconds": 120,
        "eventsOutOfOrderPolicy": "Drop",
        "outputErrorPolicy": "Stop",
        "tags": job["tags"],
    }
    # The job is created with exactly the settings the deployment keeps applying.
    for key, value in definition["settings"].items():
        assert job[key] == value, key


def test_a_shard_count_change_updates_the_jobs_query_and_nothing_else_of_it(deploy: Deploy) -> None:
    """`pulumi up` after changing shardCount: the deployment's definition differs in the query only, so its diff is an
    update whose plan is stop, PUT the transformation, start (infra/stream_job.py)."""
    before = deploy(shardCount=16).mocks.inputs(DEPLOYMENT)
    after = deploy(shardCount=64).mocks.inputs(DEPLOYMENT)
    old, new = before["definition"], after["definition"]
    assert "System.Timestamp(), 16) AS [partition_path]" in old["transformation"]["query"]
    assert "System.Timestamp(), 64) AS [partition_path]" in new["transformation"]["query"]
    assert {key for key in old if old[key] != new[key]} == {"transformation"}
    plan = Plan.between(old, new)
    assert (plan.transformation, plan.functions, plan.outputs, plan.inputs, plan.settings) == (True, (), (), (), {})
    diff = StreamJobDeploymentProvider().diff("x", before, after)
    assert (diff.changes, diff.replaces) == (True, [])


def test_registry_has_no_admin_user_and_images_come_from_the_repo(deploy: Deploy) -> None:
    exchanges = Exchanges()
    mocks = deploy(exchanger=exchanges).mocks
    registry = mocks.inputs("azure-native:containerregistry:Registry")
    assert registry["adminUserEnabled"] is False and registry["anonymousPullEnabled"] is False
    login_server = f"{registry['registryName']}.azurecr.io"
    images = {r.name.rsplit("-", 1)[1]: r.inputs for r in mocks.of_type(IMAGE)}
    assert sorted(images) == ["scorer", "submitter"]
    for name, image in images.items():
        dockerfile = Path(image["build"]["dockerfile"])
        assert dockerfile == ROOT / "Dockerfile" and image["build"]["target"] == name
        assert f" AS {name}" in dockerfile.read_text()  # one multi-stage file, a target per image
        assert image["build"]["context"] == str(ROOT)
        assert image["imageName"] == f"{login_server}/{name}:latest"
        # The credentials travel as a Pulumi secret: never in plain state or outputs.
        assert image["registry"][SECRET_SIG] == SECRET_MARK
        assert image["registry"]["value"] == {
            "server": login_server,
            "password": "acr-refresh-token",
            "username": "00000000-0000-0000-0000-000000000000",
        }
    assert exchanges.seen == [(login_server, TENANT, "entra-access-token")]


def test_pool_autoscales_with_the_built_formula(deploy: Deploy) -> None:
    deployment = deploy(vmSize="Standard_D4s_v5", maxNodes=12, taskSlotsPerNode=4, autoscaleIntervalMinutes=15)
    pool = deployment.mocks.inputs(POOL)
    config = parse_config(
        {"vmSize": "Standard_D4s_v5", "maxNodes": 12, "taskSlotsPerNode": 4, "autoscaleIntervalMinutes": 15}
    )
    assert pool["vmSize"] == "Standard_D4s_v5" and pool["taskSlotsPerNode"] == 4
    assert pool["scaleSettings"]["autoScale"] == {
        "formula": autoscale_formula(config.autoscale),
        "evaluationInterval": "PT15M",
    }
    assert "networkConfiguration" not in pool  # no subnet configured
    vm = pool["deploymentConfiguration"]["virtualMachineConfiguration"]
    containers = vm["containerConfiguration"]
    scorer_identity = deployment.mocks.one(IDENTITY, "-scorer")
    assert containers["type"] == "DockerCompatible"
    # The tag, stable across code deploys; tasks name the digest (tests/infra/test_batch_pool.py).
    assert containers["containerImageNames"] == [f"{deployment.outputs['acr_login_server']}/scorer:latest"]
    (registry,) = containers["containerRegistries"]
    assert registry == {
        "registryServer": deployment.outputs["acr_login_server"],
        "identityReference": {"resourceId": f"/mock/{IDENTITY}/{scorer_identity.name}"},
    }
    assert pool["identity"]["userAssignedIdentities"] == [f"/mock/{IDENTITY}/{scorer_identity.name}"]
    account = deployment.mocks.inputs(ACCOUNT)
    assert account["allowedAuthenticationModes"] == ["AAD"]
    assert "identity" not in account  # the nodes carry the scorer identity; the account needs none


def test_pool_in_a_subnet_gets_no_public_ips(deploy: Deploy) -> None:
    subnet = "/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v/subnets/batch"
    pool = deploy(subnetId=subnet).mocks.inputs(POOL)
    network = pool["networkConfiguration"]
    assert network["subnetId"] == subnet
    assert network["publicIPAddressConfiguration"] == {"provision": "NoPublicIPAddresses"}


def test_spot_pools_use_low_priority_targets(deploy: Deploy) -> None:
    formula = deploy(spotNodes=True).mocks.inputs(POOL)["scaleSettings"]["autoScale"]["formula"]
    assert "$TargetLowPriorityNodes = max(0, min(4, $nodes));" in formula
    assert "$TargetDedicatedNodes = 0;" in formula


def test_logic_app_recurrence_comes_from_config(deploy: Deploy) -> None:
    mocks = deploy(
        scheduleFrequency="Day",
        timeZone="W. Europe Standard Time",
        scheduleMinute=20,
        reconcileHours=25,  # a day across a daylight-saving change is 25 hours
        hourDeadlineMinutes=1401,  # an hour can wait 23 h 20 min for the daily run
    ).mocks
    definition = mocks.inputs(WORKFLOW)["definition"]
    group_id = f"/mock/{GROUP}/batchscoring-scheduler-submitter"
    trigger_identity = f"/mock/{IDENTITY}/batchscoring-identities-scheduler"
    assert definition == workflow_definition(
        Recurrence("Day", 1, "W. Europe Standard Time", 20), group_id, trigger_identity
    )
    trigger = definition["triggers"]["schedule"]
    assert trigger["recurrence"] == {  # tests/infra/test_scheduler.py checks it against the documented schema
        "frequency": "Day",
        "interval": 1,
        "startTime": "2024-01-01T00:20:00",
        "timeZone": "W. Europe Standard Time",
        "schedule": {"hours": [0], "minutes": [20]},
    }
    action = definition["actions"]["start_submitter"]["inputs"]
    assert action["method"] == "POST" and action["uri"].startswith(f"https://management.azure.com{group_id}/start")
    assert action["authentication"] == {
        "type": "ManagedServiceIdentity",
        "identity": trigger_identity,
        "audience": "https://management.azure.com/",
    }
    assert definition["actions"]["fail_if_nothing_started"]["runAfter"] == {"start_submitter": ["Succeeded"]}
    assert "password" not in json.dumps(definition).lower()
    assert mocks.inputs(WORKFLOW)["identity"] == {"type": "UserAssigned", "userAssignedIdentities": [trigger_identity]}


def test_minute_recurrence_has_no_minute_schedule() -> None:
    assert "schedule" not in Recurrence("Minute", 15).trigger()["recurrence"]
    assert "schedule" not in Recurrence("Hour", 1).trigger()["recurrence"]  # Logic Apps ignore it with Hour


def test_submitter_container_is_configured_by_environment(deploy: Deploy) -> None:
    deployment = deploy(
        taskInputMib=120,
        shardCount=32,
        latenessMinutes=12,
        taskMaxRetries=3,
        reconcileHours=48,
        trustedTypes=["sklearn.tree._tree.Tree", "numpy.dtype"],
        sklearnVersionPolicy="exact",
        modelFamily="iforest",
    )
    group = deployment.mocks.inputs(GROUP)
    assert group["restartPolicy"] == "Never" and group["osType"] == "Linux"
    submitter_identity = f"/mock/{IDENTITY}/batchscoring-identities-submitter"
    assert group["identity"] == {"type": "UserAssigned", "userAssignedIdentities": [submitter_identity]}
    assert group["imageRegistryCredentials"] == [
        {"server": deployment.outputs["acr_login_server"], "identity": submitter_identity}
    ]
    (container,) = group["containers"]
    assert container["image"] == deployment.outputs["submitter_image"]
    env = {e["name"]: e["value"] for e in container["environmentVariables"]}
    assert env[envvars.STORAGE_ACCOUNT_URL] == deployment.outputs["blob_endpoint"]
    assert env[envvars.BATCH_ACCOUNT_URL] == deployment.outputs["batch_account_endpoint"]
    assert env[envvars.BATCH_POOL_ID] == deployment.mocks.inputs(POOL)["poolName"]  # follows a replaced pool
    assert env[envvars.SCORER_IMAGE] == deployment.outputs["scorer_image"]
    assert (env[envvars.TASK_INPUT_MIB], env[envvars.LATENESS_MINUTES], env[envvars.TASK_MAX_RETRIES]) == (
        "120",
        "12",
        "3",
    )
    assert env[envvars.RECONCILE_HOURS] == "48" and env[envvars.SHARD_COUNT] == "32"
    assert env[envvars.TRUSTED_TYPES] == "sklearn.tree._tree.Tree,numpy.dtype"
    assert (env[envvars.SKLEARN_VERSION_POLICY], env[envvars.MODEL_FAMILY]) == ("exact", "iforest")
    assert env[envvars.STACK] == "dev" and env[envvars.BACKEND] == "batch"
    assert env[envvars.AZURE_CLIENT_ID].endswith("submitter-client")
    assert not any("KEY" in name or "PASSWORD" in name for name in env)


def test_submitter_container_runs_reconcile_whatever_the_image_cmd(deploy: Deploy) -> None:
    (container,) = deploy().mocks.inputs(GROUP)["containers"]
    assert container["command"] == ["submitter", "reconcile"]
    # The image says the same, for `docker run` by hand.
    stage = (ROOT / "Dockerfile").read_text().split("FROM base AS submitter", 1)[1].splitlines()
    assert 'ENTRYPOINT ["submitter"]' in stage and 'CMD ["reconcile"]' in stage


def test_submitter_defaults_reconcile_a_day_and_trust_no_extra_types(deploy: Deploy) -> None:
    (container,) = deploy().mocks.inputs(GROUP)["containers"]
    env = {e["name"]: e["value"] for e in container["environmentVariables"]}
    assert env[envvars.RECONCILE_HOURS] == "24" and env[envvars.LATENESS_MINUTES] == "15"
    assert envvars.TRUSTED_TYPES not in env  # absent, never an empty list to split


def test_training_on_the_pool_lets_the_pool_identity_write_models(deploy: Deploy) -> None:
    grants = {
        r.name.removeprefix("batchscoring-"): r.inputs for r in deploy(trainOnPool=True).mocks.of_type(ASSIGNMENT)
    }
    role = f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/"
    models = grants["scorer-access-write-models"]
    assert models["roleDefinitionId"] == role + "ba92f5b4-2d11-453d-a403-e96b0029c9fe"  # Storage Blob Data Contributor
    assert models["scope"] == f"/mock/{CONTAINER}/batchscoring-storage-models"
    assert "scorer-access-read-models" not in grants


def test_role_assignments_are_scoped_to_the_narrowest_resource(deploy: Deploy) -> None:
    mocks = deploy().mocks
    grants = {r.name.removeprefix("batchscoring-"): r.inputs for r in mocks.of_type(ASSIGNMENT)}
    role = f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/"
    reader, contributor = role + "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1", role + "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
    acr_pull = (
        role + "7f951dda-4ed3-4680-a7ca-43fe172d538d",
        "/mock/azure-native:containerregistry:Registry/batchscoring-registry-acr",
    )
    container = f"/mock/{CONTAINER}/batchscoring-storage-"
    expected = {
        "scorer-access-read-models": (reader, container + "models"),
        "scorer-access-refile-aggregates": (contributor, container + "aggregates"),
        "scorer-access-write-predictions": (contributor, container + "predictions"),
        "scorer-access-write-logs": (contributor, container + "logs"),
        "scorer-access-pull": acr_pull,
        "submitter-access-read-aggregates": (reader, container + "aggregates"),
        "submitter-access-write-logs": (contributor, container + "logs"),
        "submitter-access-pull": acr_pull,
        # Built-in "Azure Batch Job Submitter", on the one account.
        "submitter-access-batch-jobs": (
            role + "48e5e92e-a480-4e71-aa9c-2778f4c13781",
            f"/mock/{ACCOUNT}/batchscoring-batch-account",
        ),
        "stream-access-write-aggregates": (contributor, container + "aggregates"),
        "stream-access-read-events": (
            role + "a638d3c7-ab3a-418d-83e6-5f17a39d4fde",
            "/mock/azure-native:eventhub:EventHub/batchscoring-ingestion-hub",
        ),
        "scheduler-access-start-submitter": (
            "/mock/azure-native:authorization:RoleDefinition/batchscoring-role-group-starter",
            f"/mock/{GROUP}/batchscoring-scheduler-submitter",
        ),
    }
    assert {name: (g["roleDefinitionId"], g["scope"]) for name, g in grants.items()} == expected
    assert {g["principalType"] for g in grants.values()} == {"ServicePrincipal"}
    principals = {name.split("-")[0]: g["principalId"] for name, g in grants.items()}
    assert principals["scorer"].endswith("-scorer-principal")
    assert principals["scheduler"].endswith("-scheduler-principal")
    assert principals["stream"] == "batchscoring-ingestion-job-principal"


def test_the_only_custom_role_reads_and_starts_container_groups(deploy: Deploy) -> None:
    (role,) = deploy().mocks.of_type("azure-native:authorization:RoleDefinition")
    assert role.name == "batchscoring-role-group-starter"
    assert role.inputs["permissions"] == [
        {
            "actions": [
                "Microsoft.ContainerInstance/containerGroups/read",
                "Microsoft.ContainerInstance/containerGroups/start/action",
            ],
            "dataActions": [],
        }
    ]
    assert role.inputs["assignableScopes"] == ["/mock/azure-native:resources:ResourceGroup/batchscoring-rg"]


# --- issue 16: the custom role's name and id, what ACI needs to pull with a managed identity, the Wait pause ------


def test_the_custom_role_name_is_unique_per_stack_and_its_id_is_fixed(deploy: Deploy) -> None:
    """Role names are unique per tenant (RoleDefinitionWithSameNameExists): the name carries the stack and a hash of
    the resource group's id; the GUID is derived from the same id, so a retried create updates, never duplicates."""
    import uuid

    from infra.identity import role_identity

    role = deploy().mocks.one("azure-native:authorization:RoleDefinition")
    rg_id = "/mock/azure-native:resources:ResourceGroup/batchscoring-rg"
    guid, suffix = role_identity(rg_id, "batchscoring dev submitter starter")
    assert role.inputs["roleName"] == f"batchscoring dev submitter starter {suffix}"
    assert role.inputs["roleDefinitionId"] == guid and uuid.UUID(guid).version == 5
    assert deploy().mocks.one(role.typ).inputs["roleDefinitionId"] == guid  # the same on every run
    # Two stacks, or the same stack in two subscriptions of one tenant: different names and ids.
    ids = [
        f"/subscriptions/{sub}/resourceGroups/bscore-{stack}-rg"
        for sub, stack in (("s1", "dev"), ("s1", "prod"), ("s2", "dev"))
    ]
    assert len({role_identity(i, "r") for i in ids}) == 3
    assert role_identity(ids[0].upper(), "r") == role_identity(ids[0], "r")  # ARM ids are case-insensitive


def test_aci_pulls_with_a_user_assigned_identity_and_a_private_registry_only_from_the_vnet(deploy: Deploy) -> None:
    """What ACI documents for managed-identity pulls ("Deploy to Azure Container Instances from Azure Container
    Registry using a managed identity", Limitations): a user-assigned identity only; the registry's private endpoint
    on a subnet other than the ACI-delegated one; trusted services allowed on a network-restricted registry. And the
    case of azure-docs#89111 (AcrPull alone failing for a group outside any VNet against a registry with public
    access disabled) never arises: a registry that denies public access always has its group in the VNet."""
    submitter_identity = f"/mock/{IDENTITY}/batchscoring-identities-submitter"
    for overrides in (
        {},
        {"registrySku": "Premium"},
        {"privateNetwork": True, "adminIpRanges": ["203.0.113.0/24"]},
        {"privateNetwork": True, "registrySku": "Premium", "adminIpRanges": ["203.0.113.0/24"]},
    ):
        mocks = deploy(stack="prod", alertEmails=["ops@example.com"], **overrides).mocks
        group = mocks.inputs(GROUP)
        assert group["identity"]["type"] == "UserAssigned"
        assert group["identity"]["userAssignedIdentities"] == [submitter_identity]
        registry = mocks.inputs("azure-native:containerregistry:Registry")
        login_server = f"{registry['registryName']}.azurecr.io"
        assert group["imageRegistryCredentials"] == [{"server": login_server, "identity": submitter_identity}]
        restricted = registry.get("networkRuleSet", {}).get("defaultAction") == "Deny"
        assert restricted == (overrides.get("registrySku") == "Premium" and bool(overrides.get("privateNetwork")))
        if restricted:
            assert registry["networkRuleBypassOptions"] == "AzureServices"
            assert group["subnetIds"] == [{"id": "/mock/azure-native:network:Subnet/batchscoring-network-submitter"}]
            endpoint = mocks.inputs("azure-native:network:PrivateEndpoint", "registry-pe")
            assert endpoint["subnet"]["id"].endswith("batchscoring-network-endpoints")


def test_wait_sleeps_on_create_on_new_triggers_and_on_delete_only() -> None:
    from infra.wait import WaitProvider

    slept: list[float] = []
    provider = WaitProvider(sleep=slept.append)
    props = {"reason": "r", "triggers": ["a"], "create_seconds": 120, "delete_seconds": 0}
    created = provider.create(props)
    assert slept == [120.0] and created.outs == props
    assert not provider.diff("wait", props, dict(props)).changes
    assert provider.diff("wait", props, {**props, "triggers": ["a", "b"]}).changes
    provider.update("wait", props, {**props, "create_seconds": 30})  # same grants: nothing to wait for
    assert slept == [120.0]
    provider.update("wait", props, {**props, "triggers": ["b"]})  # a grant made anew
    assert slept == [120.0, 120.0]
    provider.delete("wait", props)
    assert slept == [120.0, 120.0]
    provider.delete("wait", {**props, "delete_seconds": 300})
    assert slept == [120.0, 120.0, 300.0]


def test_the_wait_provider_pickles_with_the_real_sleep() -> None:
    """Pulumi pickles dynamic providers: the default sleep must travel by reference."""
    import pickle
    import time

    from infra.wait import WaitProvider

    assert pickle.loads(pickle.dumps(WaitProvider()))._sleep is time.sleep


def test_the_first_start_is_bounded_by_the_hubs_retention(deploy: Deploy) -> None:
    """The deployment starts a job without output at the time its marker recorded, no earlier than the Event Hub
    holds readings: it is told the hub's own retention, and waits for the marker (infra/stream_job.py)."""
    mocks = deploy(eventHubRetentionDays=3).mocks
    hub = mocks.inputs("azure-native:eventhub:EventHub")
    run = mocks.one(DEPLOYMENT)
    marker = mocks.one("pulumi-python:dynamic/batchscoring:StreamJobFirstStart")
    assert hub["messageRetentionInDays"] == 3 and run.inputs["input_retention_days"] == 3
    job = mocks.one("azure-native:streamanalytics:StreamingJob")
    assert marker.inputs["job_id"] == run.inputs["job_id"] == f"/mock/{job.typ}/{job.name}"
    assert marker.urn in run.dependencies
