"""batchscoring-check: the stack file offline (the program's own config code, every error, exit 2), then the
subscription over a fake ARM behind azure-core's real pipeline: exact requests, every gap with what to do, exit
codes."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import BaseAdapter
from typer.testing import CliRunner

from infra.check_cli import app, run_check
from infra.config import parse_config
from infra.naming import NameSeed, stack_names
from infra.preflight import MODULE_PROVIDERS, REGISTERED_BY_DEFAULT, required_providers
from tests.fake_http import Call, FakeCredential, json_response
from tests.infra.conftest import Deploy
from tests.infra.test_config import stack_file_config

ROOT = Path(__file__).resolve().parents[2]
SUB = "00000000-1111-2222-3333-444444444444"
ALL = (
    "Microsoft.ManagedIdentity",
    "Microsoft.OperationalInsights",
    "Microsoft.Insights",
    "Microsoft.Storage",
    "Microsoft.EventHub",
    "Microsoft.StreamAnalytics",
    "Microsoft.ContainerRegistry",
    "Microsoft.Batch",
    "Microsoft.ContainerInstance",
    "Microsoft.Logic",
    "Microsoft.Network",
)
D2S = {"name": "Standard_D2s_v5", "familyName": "standardDSv5Family", "capabilities": [{"name": "vCPUs", "value": "2"}]}
D8S = {"name": "Standard_D8s_v5", "familyName": "standardDSv5Family", "capabilities": [{"name": "vCPUs", "value": "8"}]}


@dataclass
class FakeSubscription(BaseAdapter):
    """One subscription's ARM answers for what the preflight reads."""

    providers: dict[str, str] = field(default_factory=lambda: dict.fromkeys(ALL, "Registered"))
    account_quota: int = 1
    accounts: list[dict[str, Any]] = field(default_factory=list)  # Batch accounts (name, location, properties)
    skus: list[dict[str, Any]] = field(default_factory=lambda: [D2S, D8S])
    existing: set[str] = field(default_factory=set)  # lower-case resource ids under the stack's group
    taken: set[str] = field(default_factory=set)  # names checkNameAvailability reports as taken
    subscriptions: list[str] = field(default_factory=lambda: [SUB])
    denied: bool = False
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        call = Call.of(request)
        self.calls.append(call)
        if self.denied:
            return json_response(request, 403, {"error": {"code": "AuthorizationFailed", "message": "no read"}})
        status, payload = self._route(call)
        return json_response(request, status, payload)

    def close(self) -> None:
        pass

    def _route(self, call: Call) -> tuple[int, Any]:
        path = call.path
        sub = f"/subscriptions/{SUB}"
        if path == "/subscriptions":
            return 200, {"value": [{"subscriptionId": s} for s in self.subscriptions]}
        if call.method == "GET" and (m := re.fullmatch(rf"{sub}/providers/([^/]+)", path)):
            return 200, {"namespace": m[1], "registrationState": self.providers.get(m[1], "NotRegistered")}
        if path == f"{sub}/providers/Microsoft.Batch/locations/westeurope/quotas":
            return 200, {"accountQuota": self.account_quota}
        if path == f"{sub}/providers/Microsoft.Batch/batchAccounts":
            # Two pages when there is more than one account: the client must follow nextLink.
            if call.query.get("page") == ["2"]:
                return 200, {"value": self.accounts[1:]}
            next_link = (
                {"nextLink": f"https://management.azure.com{path}?api-version=2024-07-01&page=2"}
                if len(self.accounts) > 1
                else {}
            )
            return 200, {"value": self.accounts[:1], **next_link}
        if path == f"{sub}/providers/Microsoft.Batch/locations/westeurope/virtualMachineSkus":
            return 200, {"value": self.skus}
        if call.method == "GET" and path.lower().startswith(f"{sub}/resourcegroups/"):
            if path.lower() in self.existing:
                return 200, {"id": path}
            return 404, {"error": {"code": "ResourceNotFound", "message": "not found"}}
        if call.method == "POST" and path.lower().endswith("/checknameavailability"):
            name = call.body["name"]
            if name in self.taken:
                return 200, {"nameAvailable": False, "reason": "AlreadyExists", "message": f"{name} is taken."}
            return 200, {"nameAvailable": True}
        return 404, {"error": {"code": "NotFound", "message": f"no route {call.method} {path}"}}

    def transport(self) -> RequestsTransport:
        session = requests.Session()
        session.mount("https://", self)
        return RequestsTransport(session=session, session_owner=False)

    def trace(self) -> list[str]:
        return [f"{c.method} {c.path.removeprefix(f'/subscriptions/{SUB}')}" for c in self.calls]


def check(
    fake: FakeSubscription, stack: str = "dev", subscription: str | None = SUB, **kw: Any
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_check(
        kw.pop("stack_file", ROOT / f"Pulumi.{stack}.yaml"),
        offline=False,
        subscription=subscription,
        credential=FakeCredential,
        transport=fake.transport(),
        environ=kw.pop("environ", {}),
        out=out,
        err=err,
    )
    return code, out.getvalue(), err.getvalue()


def names_of(stack: str, location: str = "westeurope") -> Any:
    return stack_names(NameSeed(SUB, "batchscoring", stack, "bscore", location))


# --- offline -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_offline_stack_files_are_valid(stack: str) -> None:
    result = CliRunner().invoke(app, [str(ROOT / f"Pulumi.{stack}.yaml"), "--offline"])
    assert result.exit_code == 0, result.output
    assert f"Pulumi.{stack}.yaml: valid (batchscoring/{stack}, westeurope)" in result.output


def test_offline_broken_stack_file_reports_every_error_and_exits_2(tmp_path: Path) -> None:
    text = (ROOT / "Pulumi.prod.yaml").read_text()
    broken = text.replace("maxNodes: 40", "maxNodes: 0").replace("namePrefix: bscore", "namePrefix: B-score")
    broken += "  batchscoring:max_nodes: 3\n  batchscoring:streamingUnits: 4\n"
    (tmp_path / "Pulumi.broken.yaml").write_text(broken)
    result = CliRunner().invoke(app, [str(tmp_path / "Pulumi.broken.yaml"), "--offline"])
    assert result.exit_code == 2
    for line in (
        "batchscoring:namePrefix: String should match pattern",
        "batchscoring:maxNodes: Input should be greater than or equal to 1",
        "batchscoring:streamingUnits: 4 is not a valid streaming-unit count (1, 3, 6, 12, 18, ...): use 3 or 6",
        "batchscoring:max_nodes: unknown key; did you mean maxNodes?",
    ):
        assert line in result.output, result.output


def test_offline_unreadable_stack_files_exit_2(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.bad.yaml").write_text("config: [1, 2")
    (tmp_path / "stack.yaml").write_text("config: {}")
    for path in (tmp_path / "Pulumi.bad.yaml", tmp_path / "stack.yaml", tmp_path / "Pulumi.none.yaml"):
        assert CliRunner().invoke(app, [str(path), "--offline"]).exit_code == 2


def test_the_offline_check_makes_no_request() -> None:
    fake = FakeSubscription()
    code = run_check(ROOT / "Pulumi.dev.yaml", offline=True, transport=fake.transport(), out=io.StringIO())
    assert code == 0 and fake.calls == []


# --- which providers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stack", "extra"), [("dev", {}), ("prod", {}), ("dev", {"telemetry": True})])
def test_required_providers_are_those_of_the_declared_resources(deploy: Deploy, stack: str, extra: Any) -> None:
    """The list is checked against what the program declares (under mocks), not against a hand-written list: the
    issue's ten, plus Microsoft.Storage, which it missed; Microsoft.Network only with privateNetwork."""
    raw = {**stack_file_config(stack), **extra}
    deployment = deploy(stack=stack, **raw)
    modules = {r.typ.split(":")[1] for r in deployment.mocks.resources if r.typ.startswith("azure-native:")}
    declared = {MODULE_PROVIDERS[m] for m in modules} - REGISTERED_BY_DEFAULT
    assert {p.namespace for p in required_providers(parse_config(raw))} == declared
    assert "Microsoft.Storage" in declared and ("Microsoft.Network" in declared) == (stack == "prod")


# --- against the subscription -------------------------------------------------------------------------------------


def test_a_ready_subscription_passes_with_exactly_these_requests() -> None:
    fake = FakeSubscription()
    code, out, err = check(fake)
    assert code == 0, out + err
    names = names_of("dev")
    group = f"/resourceGroups/{names.resource_group}/providers"
    assert fake.trace() == [
        *(
            f"GET /providers/{ns}"
            for ns in ALL
            if ns != "Microsoft.Network"  # dev: no private network
        ),
        "GET /providers/Microsoft.Batch/locations/westeurope/quotas",
        "GET /providers/Microsoft.Batch/batchAccounts",
        f"GET {group}/Microsoft.Storage/storageAccounts/{names.storage_account}",
        "POST /providers/Microsoft.Storage/checkNameAvailability",
        f"GET {group}/Microsoft.ContainerRegistry/registries/{names.registry}",
        "POST /providers/Microsoft.ContainerRegistry/checkNameAvailability",
        f"GET {group}/Microsoft.EventHub/namespaces/{names.event_hubs_namespace}",
        "POST /providers/Microsoft.EventHub/checkNameAvailability",
        f"GET {group}/Microsoft.Batch/batchAccounts/{names.batch_account}",
        "POST /providers/Microsoft.Batch/locations/westeurope/checkNameAvailability",
        "GET /providers/Microsoft.Batch/locations/westeurope/virtualMachineSkus",
    ]
    posts = [c for c in fake.calls if c.method == "POST"]
    assert [c.body for c in posts] == [
        {"name": names.storage_account, "type": "Microsoft.Storage/storageAccounts"},
        {"name": names.registry, "type": "Microsoft.ContainerRegistry/registries"},
        {"name": names.event_hubs_namespace},
        {"name": names.batch_account, "type": "Microsoft.Batch/batchAccounts"},
    ]
    versions = {c.path.split("/providers/")[-1].split("/")[0]: c.query["api-version"] for c in fake.calls}
    assert versions["Microsoft.Batch"] == ["2024-07-01"] and versions["Microsoft.Storage"] == ["2023-05-01"]
    assert all("api-version" in c.query for c in fake.calls)
    # Before the account exists its core quota is unknown: said, with the numbers to request, not a failure.
    assert "[note] dedicated cores: the pool asks for up to 4 dedicated vCPUs (2 x Standard_D2s_v5" in out
    assert "Nothing blocks the first `pulumi up`." in out


def test_an_empty_subscription_names_every_unregistered_provider_with_its_command() -> None:
    fake = FakeSubscription(providers={"Microsoft.Network": "Registered", "Microsoft.Logic": "Registering"})
    code, out, _ = check(fake, stack="prod")
    assert code == 1
    for ns in ALL:
        if ns in ("Microsoft.Network", "Microsoft.Logic"):
            continue
        assert f"[ gap] provider {ns}: NotRegistered" in out
        assert f"-> az provider register --namespace {ns} --subscription {SUB}" in out
    assert "[ gap] provider Microsoft.Logic: Registering" in out and "[  ok] provider Microsoft.Network" in out
    # Nothing else can be read from unregistered providers: the names wait for a re-run, and no POST is sent.
    assert out.count("checked once Microsoft.") == 4 and not [c for c in fake.calls if c.method == "POST"]
    assert "10 gap(s) to fix before `pulumi up`." in out


def test_a_full_batch_region_is_a_gap_naming_the_accounts() -> None:
    fake = FakeSubscription(
        account_quota=2,
        accounts=[{"name": "teamabatch", "location": "West Europe"}, {"name": "teambbatch", "location": "westeurope"}],
    )
    code, out, _ = check(fake)
    assert code == 1
    assert "[ gap] Batch accounts in westeurope: 2 of 2 allowed already exist (teamabatch, teambbatch)" in out
    assert "request a higher Batch account quota" in out
    assert sum(c.query.get("page") == ["2"] for c in fake.calls) == 1  # followed nextLink


def test_accounts_elsewhere_do_not_count_and_the_stacks_own_account_is_fine() -> None:
    names = names_of("dev")
    other_region = FakeSubscription(accounts=[{"name": "elsewhere", "location": "northeurope"}])
    assert check(other_region)[0] == 0
    own = {"name": names.batch_account, "location": "westeurope", "properties": {"dedicatedCoreQuota": 10}}
    group = f"/subscriptions/{SUB}/resourcegroups/{names.resource_group}/providers".lower()
    rerun = FakeSubscription(
        accounts=[own],
        existing={f"{group}/microsoft.batch/batchaccounts/{names.batch_account}"},
    )
    code, out, _ = check(rerun)
    assert code == 0, out
    assert f"the stack's account {names.batch_account} exists" in out
    assert "[  ok] dedicated cores: quota 10 covers 4 dedicated vCPUs" in out
    assert "[  ok] Batch account name" in out and "the stack's own resource exists" in out
    assert len([c for c in rerun.calls if c.method == "POST"]) == 3  # no availability check for its own name


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"lowPriorityCoreQuota": 100}, "Spot (low-priority) cores: quota 100 is below 320 Spot (low-priority) vCPUs"),
        ({"lowPriorityCoreQuota": 0}, "the pool would stop at 0 nodes"),
    ],
)
def test_an_existing_account_below_the_pools_cores_is_a_gap(properties: dict[str, int], expected: str) -> None:
    names = names_of("prod")
    fake = FakeSubscription(
        accounts=[{"name": names.batch_account, "location": "westeurope", "properties": properties}]
    )
    code, out, _ = check(fake, stack="prod")
    assert code == 1 and expected in out
    assert f"request 320 Spot (low-priority) cores for the Batch account {names.batch_account}" in out


def test_a_spot_pool_needs_its_dedicated_fallback_cores_too() -> None:
    """prod: 40 Spot nodes and up to 8 dedicated fallback nodes of 8 vCPUs: two quotas, both checked."""
    names = names_of("prod")
    properties = {
        "lowPriorityCoreQuota": 320,
        "dedicatedCoreQuotaPerVMFamilyEnforced": True,
        "dedicatedCoreQuotaPerVMFamily": [{"name": "standardDSv5Family", "coreQuota": 16}],
    }
    fake = FakeSubscription(
        accounts=[{"name": names.batch_account, "location": "westeurope", "properties": properties}]
    )
    code, out, _ = check(fake, stack="prod")
    assert "quota 320 covers 320 Spot (low-priority) vCPUs" in out
    assert code == 1 and "quota 16 is below 64 dedicated vCPUs (8 x Standard_D8s_v5" in out
    assert "request 64 dedicated cores of family standardDSv5Family" in out


def test_dedicated_cores_per_family_when_enforced() -> None:
    names = names_of("dev")
    properties = {
        "dedicatedCoreQuota": 500,
        "dedicatedCoreQuotaPerVMFamilyEnforced": True,
        "dedicatedCoreQuotaPerVMFamily": [{"name": "standardDSv5Family", "coreQuota": 2}],
    }
    fake = FakeSubscription(
        accounts=[{"name": names.batch_account, "location": "westeurope", "properties": properties}]
    )
    code, out, _ = check(fake)
    assert code == 1 and "quota 2 is below 4 dedicated vCPUs" in out
    assert "of family standardDSv5Family" in out


def test_a_vm_size_batch_does_not_offer_is_a_gap() -> None:
    code, out, _ = check(FakeSubscription(skus=[D8S]))
    assert code == 1 and "[ gap] vmSize Standard_D2s_v5: not offered by Batch in westeurope" in out
    assert "az batch location list-skus --location westeurope" in out


def test_every_taken_global_name_is_a_gap() -> None:
    names = names_of("dev")
    taken = {names.storage_account, names.registry, names.event_hubs_namespace, names.batch_account}
    code, out, _ = check(FakeSubscription(taken=taken))
    assert code == 1
    for what, name in (
        ("storage account", names.storage_account),
        ("container registry", names.registry),
        ("Event Hubs namespace", names.event_hubs_namespace),
        ("Batch account", names.batch_account),
    ):
        assert f"[ gap] {what} name {name}: not available: AlreadyExists {name} is taken." in out
    assert out.count("change batchscoring:namePrefix") == 4 and "4 gap(s)" in out


def test_no_read_access_exits_1_with_what_to_do() -> None:
    code, _, err = check(FakeSubscription(denied=True))
    assert code == 1
    assert "cannot check the subscription" in err and "403 AuthorizationFailed: no read" in err
    assert "needs at least Reader on the subscription" in err


def test_the_subscription_comes_from_the_option_the_stack_the_environment_or_the_only_one(tmp_path: Path) -> None:
    fake = FakeSubscription(subscriptions=[SUB])
    assert check(fake, subscription=None)[0] == 0
    assert fake.calls[0].path == "/subscriptions"
    two = FakeSubscription(subscriptions=[SUB, "other"])
    code, _, err = check(two, subscription=None)
    assert code == 1 and "sees 2 subscriptions: name the one to check with --subscription" in err
    env = FakeSubscription(subscriptions=[SUB, "other"])
    assert check(env, subscription=None, environ={"ARM_SUBSCRIPTION_ID": SUB})[0] == 0
    assert env.calls[0].path != "/subscriptions"
    stack_file = tmp_path / "Pulumi.dev.yaml"
    stack_file.write_text((ROOT / "Pulumi.dev.yaml").read_text() + f"  azure-native:subscriptionId: {SUB}\n")
    (tmp_path / "Pulumi.yaml").write_text("name: batchscoring\n")
    pinned = FakeSubscription(subscriptions=[SUB, "other"])
    assert check(pinned, subscription=None, stack_file=stack_file)[0] == 0
