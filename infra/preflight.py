"""What a stack needs from its subscription before the first ``pulumi up``, checked over ARM (``batchscoring-check``).

Why: azure-native does not reliably register resource providers (pulumi-azure-native#3479, open: "Creating a
DiagnosticSetting is failing with ... The subscription ... is not registered to use microsoft.insights"), Batch allows
few accounts per region and small core quotas, and global names may be taken. Each of these fails ``pulumi up``
half-way; the check finds them first and says what to do for each.

Azure's contracts used (ARM REST, learn.microsoft.com/rest/api/...):
- Providers - Get, ``GET /subscriptions/{s}/providers/{namespace}?api-version=2021-04-01``: ``registrationState``
  (Registered, Registering, NotRegistered, Unregistered...). "Azure resource providers and types"
  (learn.microsoft.com/azure/azure-resource-manager/management/resource-providers-and-types): "Some resource
  providers are registered by default"; the others must be registered (``az provider register --namespace``) before
  their resources can be created.
- Batch Location - Get Quotas, ``GET .../providers/Microsoft.Batch/locations/{location}/quotas``: ``accountQuota``,
  "The number of Batch accounts that may be created under the subscription in the specified region"; Batch Account -
  List, ``GET .../providers/Microsoft.Batch/batchAccounts``; Location - List Supported Virtual Machine Skus,
  ``GET .../Microsoft.Batch/locations/{location}/virtualMachineSkus`` (``name``, ``familyName``, ``capabilities``
  with ``vCPUs``); Batch Account - Get: ``dedicatedCoreQuota``, ``lowPriorityCoreQuota``,
  ``dedicatedCoreQuotaPerVMFamily``, ``dedicatedCoreQuotaPerVMFamilyEnforced``. Core quotas belong to the account
  ("Batch service quotas and limits", learn.microsoft.com/azure/batch/batch-quota-limit: "quotas ... apply per
  Batch account"), so before the account exists only the account quota and the VM size can be checked; the core
  need is printed for the quota request, and checked on a re-run once the account exists.
- Check Name Availability: Storage ``POST .../providers/Microsoft.Storage/checkNameAvailability`` with
  ``{"name", "type": "Microsoft.Storage/storageAccounts"}``; Container Registry ``POST
  .../providers/Microsoft.ContainerRegistry/checkNameAvailability`` with ``{"name", "type":
  "Microsoft.ContainerRegistry/registries"}``; Event Hubs ``POST
  .../providers/Microsoft.EventHub/checkNameAvailability`` with ``{"name"}``; Batch ``POST
  .../providers/Microsoft.Batch/locations/{location}/checkNameAvailability`` with ``{"name", "type":
  "Microsoft.Batch/batchAccounts"}``. Each answers ``nameAvailable``, ``reason``, ``message``. A name
  the stack already holds is not available either, so the stack's own resource is looked up first (a re-run).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.pipeline.policies import HeadersPolicy, RequestIdPolicy, RetryPolicy, UserAgentPolicy
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy, ARMHttpLoggingPolicy

from infra.config import PlatformConfig
from infra.naming import StackNames
from infra.stream_job_client import ARM_ENDPOINT, ARM_SCOPE

PROVIDERS_API: Final = "2021-04-01"
BATCH_API: Final = "2024-07-01"
STORAGE_API: Final = "2023-05-01"
REGISTRY_API: Final = "2023-07-01"
EVENTHUB_API: Final = "2024-01-01"
SUBSCRIPTIONS_API: Final = "2022-12-01"

# azure-native module -> the resource provider its resources belong to. Microsoft.Resources and Microsoft.Authorization
# (resource groups, role assignments and definitions, locks) are among the providers "registered by default".
MODULE_PROVIDERS: Final = {
    "batch": "Microsoft.Batch",
    "containerinstance": "Microsoft.ContainerInstance",
    "containerregistry": "Microsoft.ContainerRegistry",
    "eventhub": "Microsoft.EventHub",
    "logic": "Microsoft.Logic",
    "managedidentity": "Microsoft.ManagedIdentity",
    "monitor": "Microsoft.Insights",
    "applicationinsights": "Microsoft.Insights",
    "network": "Microsoft.Network",
    "privatedns": "Microsoft.Network",
    "operationalinsights": "Microsoft.OperationalInsights",
    "storage": "Microsoft.Storage",
    "streamanalytics": "Microsoft.StreamAnalytics",
    "resources": "Microsoft.Resources",
    "authorization": "Microsoft.Authorization",
}
REGISTERED_BY_DEFAULT: Final = frozenset({"Microsoft.Resources", "Microsoft.Authorization"})


class Status(StrEnum):
    OK = "ok"
    GAP = "gap"  # pulumi up would fail: the fix says what to do
    NOTE = "note"  # cannot be checked yet, or worth knowing; not a failure


@dataclass(frozen=True)
class Finding:
    check: str  # e.g. "provider Microsoft.Batch"
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"[{self.status.value:>4}] {self.check}: {self.detail}"
        return f"{text}\n       -> {self.fix}" if self.fix else text


@dataclass(frozen=True)
class Provider:
    namespace: str
    why: str


def required_providers(config: PlatformConfig) -> tuple[Provider, ...]:
    """The providers the program's resources need for this config (tests/infra/test_preflight.py compares it with
    the resource types the program declares under mocks, for both stack files)."""
    needed = [
        Provider("Microsoft.ManagedIdentity", "user-assigned identities of scorer, submitter and scheduler"),
        Provider("Microsoft.OperationalInsights", "the Log Analytics workspace"),
        Provider("Microsoft.Insights", "diagnostic settings, the action group and the alert rules"),
        Provider("Microsoft.Storage", "the storage account"),
        Provider("Microsoft.EventHub", "the Event Hubs namespace"),
        Provider("Microsoft.StreamAnalytics", "the stream job"),
        Provider("Microsoft.ContainerRegistry", "the registry"),
        Provider("Microsoft.Batch", "the Batch account and pool"),
        Provider("Microsoft.ContainerInstance", "the submitter container group"),
        Provider("Microsoft.Logic", "the scheduling Logic App"),
    ]
    if config.private_network:
        needed.append(Provider("Microsoft.Network", "privateNetwork: VNet, NAT gateway, private endpoints and DNS"))
    return tuple(needed)


@dataclass(frozen=True)
class CoreNeed:
    """What the pool asks of the Batch account's core quota at maxNodes."""

    vm_size: str
    vcpus: int
    family: str
    nodes: int
    spot: bool

    @property
    def cores(self) -> int:
        return self.vcpus * self.nodes

    @property
    def kind(self) -> str:
        return "Spot (low-priority)" if self.spot else "dedicated"


class PreflightError(RuntimeError):
    """The check itself could not run (no credential, no access): the message says what to do."""


# --- the ARM client ------------------------------------------------------------------------------------------------


class ArmReader:
    """GETs and POSTs of JSON over ARM, through azure-core's pipeline (retry, bearer token), as StreamJobClient does."""

    def __init__(
        self,
        credential: TokenCredential,
        *,
        transport: HttpTransport[Any, Any] | None = None,
        endpoint: str = ARM_ENDPOINT,
        retry_total: int = 3,
        retry_backoff_factor: float = 0.8,
    ) -> None:
        self._endpoint = endpoint.rstrip("/")
        policies: list[Any] = [
            RequestIdPolicy(),
            HeadersPolicy(),
            UserAgentPolicy(sdk_moniker="batchscoring-check"),
            RetryPolicy(retry_total=retry_total, retry_backoff_factor=retry_backoff_factor),
            ARMChallengeAuthenticationPolicy(credential, ARM_SCOPE),
            ARMHttpLoggingPolicy(),
        ]
        self._client: ARMPipelineClient[Any, Any] = ARMPipelineClient(
            base_url=self._endpoint, policies=policies, transport=transport
        )

    def close(self) -> None:
        self._client.close()

    def call(self, method: str, path: str, api_version: str, body: Mapping[str, Any] | None = None) -> tuple[int, Any]:
        """(status, decoded JSON or None); 401/403 raise PreflightError."""
        url = path if path.startswith("https://") else f"{self._endpoint}{path}"
        params = {} if "api-version=" in url else {"api-version": api_version}
        try:
            response = self._client.send_request(HttpRequest(method, url, params=params, json=body))
        except ClientAuthenticationError as err:
            raise PreflightError(
                f"no ARM token: {err.message}. Log in (`az login`) or set a service principal"
            ) from err
        if response.status_code in (401, 403):
            raise PreflightError(
                f"{method} {path}: {response.status_code} {_error_message(response.text())}. The identity running the "
                "check needs at least Reader on the subscription"
            )
        try:
            payload = response.json() if response.text() else None
        except ValueError:
            payload = None
        return response.status_code, payload

    def pages(self, path: str, api_version: str) -> Iterator[dict[str, Any]]:
        """Every item of a list operation, following ``nextLink``."""
        url: str | None = path
        while url:
            status, payload = self.call("GET", url, api_version)
            if status != 200 or not isinstance(payload, dict):
                raise _unexpected("GET", url, status, payload)
            yield from payload.get("value") or []
            url = payload.get("nextLink")


def _error_message(text: str) -> str:
    import json

    try:
        error = json.loads(text).get("error") or {}
    except (ValueError, AttributeError):
        return text[:200]
    return f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")


def _unexpected(method: str, path: str, status: int, payload: Any) -> HttpResponseError:
    error = payload.get("error", {}) if isinstance(payload, dict) else {}
    return HttpResponseError(f"{method} {path} answered {status} {error.get('code', '')} {error.get('message', '')}")


# --- the checks ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GlobalName:
    """A name that must be free outside the stack, how to find the stack's own resource, and how to ask Azure."""

    what: str  # e.g. "storage account"
    name: str
    namespace: str
    resource_path: str  # under the resource group: providers/<type>/<name>
    api_version: str
    check_path: str
    check_body: dict[str, str]


def global_names(subscription: str, location: str, names: StackNames) -> tuple[GlobalName, ...]:
    sub = f"/subscriptions/{subscription}/providers"
    return (
        GlobalName(
            "storage account",
            names.storage_account,
            "Microsoft.Storage",
            f"Microsoft.Storage/storageAccounts/{names.storage_account}",
            STORAGE_API,
            f"{sub}/Microsoft.Storage/checkNameAvailability",
            {"name": names.storage_account, "type": "Microsoft.Storage/storageAccounts"},
        ),
        GlobalName(
            "container registry",
            names.registry,
            "Microsoft.ContainerRegistry",
            f"Microsoft.ContainerRegistry/registries/{names.registry}",
            REGISTRY_API,
            f"{sub}/Microsoft.ContainerRegistry/checkNameAvailability",
            {"name": names.registry, "type": "Microsoft.ContainerRegistry/registries"},
        ),
        GlobalName(
            "Event Hubs namespace",
            names.event_hubs_namespace,
            "Microsoft.EventHub",
            f"Microsoft.EventHub/namespaces/{names.event_hubs_namespace}",
            EVENTHUB_API,
            f"{sub}/Microsoft.EventHub/checkNameAvailability",
            {"name": names.event_hubs_namespace},
        ),
        GlobalName(
            "Batch account",
            names.batch_account,
            "Microsoft.Batch",
            f"Microsoft.Batch/batchAccounts/{names.batch_account}",
            BATCH_API,
            f"{sub}/Microsoft.Batch/locations/{location}/checkNameAvailability",
            {"name": names.batch_account, "type": "Microsoft.Batch/batchAccounts"},
        ),
    )


@dataclass
class Preflight:
    """The subscription checks for one stack; ``run`` returns every finding, gaps and all."""

    arm: ArmReader
    subscription: str
    config: PlatformConfig
    names: StackNames
    registered: set[str] = field(default_factory=set)

    def run(self) -> list[Finding]:
        findings = self.providers()
        batch_account = None
        if "Microsoft.Batch" in self.registered:
            batch_findings, batch_account = self.batch()
            findings += batch_findings
        findings += self.name_availability()
        if "Microsoft.Batch" in self.registered:
            findings += self.cores(batch_account)
        return findings

    # providers ------------------------------------------------------------------------------------------------------

    def providers(self) -> list[Finding]:
        findings = []
        for provider in required_providers(self.config):
            ns = provider.namespace
            status, payload = self.arm.call("GET", f"/subscriptions/{self.subscription}/providers/{ns}", PROVIDERS_API)
            state = payload.get("registrationState", "") if status == 200 and isinstance(payload, dict) else ""
            check = f"provider {ns}"
            register = f"az provider register --namespace {ns} --subscription {self.subscription}"
            if state == "Registered":
                self.registered.add(ns)
                findings.append(Finding(check, Status.OK, "Registered"))
            elif state == "Registering":
                findings.append(
                    Finding(
                        check,
                        Status.GAP,
                        f"Registering (needed for {provider.why})",
                        f"wait until `az provider show --namespace {ns} --query registrationState` says Registered "
                        "(usually minutes), then re-run this check",
                    )
                )
            elif status == 200:
                findings.append(
                    Finding(check, Status.GAP, f"{state or 'unknown state'} (needed for {provider.why})", register)
                )
            else:
                findings.append(
                    Finding(check, Status.GAP, f"not readable ({status} {_error_message(str(payload))})", register)
                )
        return findings

    # Batch ------------------------------------------------------------------------------------------------------------

    def batch(self) -> tuple[list[Finding], dict[str, Any] | None]:
        """The account quota of the stack's region against the accounts already there; the stack's own account."""
        location = self.config.location
        base = f"/subscriptions/{self.subscription}/providers/Microsoft.Batch"
        status, payload = self.arm.call("GET", f"{base}/locations/{location}/quotas", BATCH_API)
        if status != 200 or not isinstance(payload, dict):
            raise _unexpected("GET", f"{base}/locations/{location}/quotas", status, payload)
        quota = int(payload.get("accountQuota", 0))
        accounts = [
            a for a in self.arm.pages(f"{base}/batchAccounts", BATCH_API) if _region(a.get("location", "")) == location
        ]
        own = next((a for a in accounts if str(a.get("name", "")).lower() == self.names.batch_account), None)
        check = f"Batch accounts in {location}"
        if own is not None:
            return [Finding(check, Status.OK, f"the stack's account {self.names.batch_account} exists")], own
        if len(accounts) < quota:
            return [Finding(check, Status.OK, f"{len(accounts)} of {quota} used; the stack adds one")], None
        others = ", ".join(sorted(str(a.get("name")) for a in accounts))
        return [
            Finding(
                check,
                Status.GAP,
                f"{len(accounts)} of {quota} allowed already exist ({others}); the stack needs one more",
                f"delete an unused Batch account in {location}, deploy to another location (batchscoring:location "
                "and azure-native:location), or request a higher Batch account quota for the region (Azure portal: "
                "Quotas > Batch, or a support request)",
            )
        ], None

    def core_needs(self) -> list[CoreNeed] | Finding:
        """The pool's core needs at maxNodes: Spot cores, and the dedicated ones (all of them without Spot, the
        ``dedicatedFallbackNodes`` with it: both quotas are counted separately by Batch)."""
        location = self.config.location
        path = f"/subscriptions/{self.subscription}/providers/Microsoft.Batch/locations/{location}/virtualMachineSkus"
        sku = next(
            (
                s
                for s in self.arm.pages(path, BATCH_API)
                if str(s.get("name", "")).lower() == self.config.vm_size.lower()
            ),
            None,
        )
        if sku is None:
            return Finding(
                f"vmSize {self.config.vm_size}",
                Status.GAP,
                f"not offered by Batch in {location}",
                f"pick a size from `az batch location list-skus --location {location} -o table` for "
                "batchscoring:vmSize",
            )
        capabilities = {c.get("name"): c.get("value") for c in sku.get("capabilities") or []}
        vcpus, family = int(capabilities.get("vCPUs", 0)), str(sku.get("familyName", ""))
        spot = self.config.spot_nodes
        dedicated = self.config.dedicated_fallback_nodes if spot else self.config.max_nodes
        needs = [CoreNeed(self.config.vm_size, vcpus, family, self.config.max_nodes, True)] if spot else []
        if dedicated:
            needs.append(CoreNeed(self.config.vm_size, vcpus, family, dedicated, False))
        return needs

    def cores(self, account: dict[str, Any] | None) -> list[Finding]:
        needs = self.core_needs()
        if isinstance(needs, Finding):
            return [needs]
        return [finding for need in needs for finding in self._core_quota(need, account)]

    def _core_quota(self, need: CoreNeed, account: dict[str, Any] | None) -> list[Finding]:
        check = f"{need.kind} cores"
        wanted = (
            f"{need.cores} {need.kind} vCPUs ({need.nodes} x {need.vm_size}, {need.vcpus} vCPUs each, "
            f"family {need.family})"
        )
        request = (
            f"request {need.cores} {need.kind} cores{'' if need.spot else f' of family {need.family}'} for the Batch "
            f"account {self.names.batch_account} (Azure portal: the account > Quotas > Request quota increase), or "
            "lower batchscoring:maxNodes"
        )
        if account is None:
            return [
                Finding(
                    check,
                    Status.NOTE,
                    f"the pool asks for up to {wanted}. Core quotas belong to the Batch account, which does not exist "
                    "yet: a new account gets the region's defaults (learn.microsoft.com/azure/batch/batch-quota-limit)",
                    f"after `pulumi up` creates the account, re-run this check; if it reports a gap, {request}",
                )
            ]
        props = account.get("properties") or {}
        if need.spot:
            have = int(props.get("lowPriorityCoreQuota", 0))
        elif props.get("dedicatedCoreQuotaPerVMFamilyEnforced"):
            families = {f.get("name"): f.get("coreQuota", 0) for f in props.get("dedicatedCoreQuotaPerVMFamily") or []}
            have = int(families.get(need.family, 0))
        else:
            have = int(props.get("dedicatedCoreQuota", 0))
        if have >= need.cores:
            return [Finding(check, Status.OK, f"quota {have} covers {wanted}")]
        nodes = math.floor(have / need.vcpus) if need.vcpus else 0
        return [
            Finding(
                check,
                Status.GAP,
                f"quota {have} is below {wanted}: the pool would stop at {nodes} nodes",
                request,
            )
        ]

    # names ------------------------------------------------------------------------------------------------------------

    def name_availability(self) -> list[Finding]:
        findings = []
        group = f"/subscriptions/{self.subscription}/resourceGroups/{self.names.resource_group}/providers"
        for item in global_names(self.subscription, self.config.location, self.names):
            check = f"{item.what} name {item.name}"
            if item.namespace not in self.registered:
                findings.append(
                    Finding(check, Status.NOTE, f"checked once {item.namespace} is registered", "re-run this check")
                )
                continue
            status, _ = self.arm.call("GET", f"{group}/{item.resource_path}", item.api_version)
            if status == 200:
                findings.append(Finding(check, Status.OK, "the stack's own resource exists"))
                continue
            status, payload = self.arm.call("POST", item.check_path, item.api_version, item.check_body)
            if status != 200 or not isinstance(payload, dict):
                raise _unexpected("POST", item.check_path, status, payload)
            if payload.get("nameAvailable"):
                findings.append(Finding(check, Status.OK, "available"))
                continue
            findings.append(
                Finding(
                    check,
                    Status.GAP,
                    f"not available: {payload.get('reason', '')} {payload.get('message', '')}".strip(),
                    "change batchscoring:namePrefix (the names' hash suffix changes with it); a name held by a "
                    "resource deleted moments ago frees up once Azure has purged it",
                )
            )
        return findings


def _region(location: str) -> str:
    """ARM answers locations as display names at times ("West Europe"); compare as the program writes them."""
    return location.replace(" ", "").lower()


# --- the subscription ------------------------------------------------------------------------------------------------


def choose_subscription(
    given: str | None, stack_settings: Mapping[str, Any], environ: Mapping[str, str], arm: Callable[[], ArmReader]
) -> str:
    """The subscription azure-native would deploy to, as far as can be known without it: ``--subscription``, the
    stack's ``azure-native:subscriptionId``, ``ARM_SUBSCRIPTION_ID``/``AZURE_SUBSCRIPTION_ID``, else the only one the
    credential sees."""
    for candidate in (
        given,
        stack_settings.get("azure-native:subscriptionId"),
        environ.get("ARM_SUBSCRIPTION_ID"),
        environ.get("AZURE_SUBSCRIPTION_ID"),
    ):
        if candidate:
            return str(candidate)
    subscriptions = [str(s.get("subscriptionId")) for s in arm().pages("/subscriptions", SUBSCRIPTIONS_API)]
    if len(subscriptions) == 1:
        return subscriptions[0]
    raise PreflightError(
        f"the credential sees {len(subscriptions)} subscriptions: name the one to check with --subscription "
        "(or set azure-native:subscriptionId / ARM_SUBSCRIPTION_ID as for `pulumi up`)"
    )
