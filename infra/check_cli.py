"""``batchscoring-check Pulumi.<stack>.yaml``: the stack file validated offline by the program's own code, then the
subscription checked for what the first ``pulumi up`` needs (``infra/preflight.py``).

Exit codes: 0 nothing to do; 1 the subscription has a gap (or could not be checked); 2 the stack file is invalid.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.transport import HttpTransport

from infra.config import ConfigError
from infra.naming import NameSeed, StackNames, name_errors, stack_names
from infra.preflight import ArmReader, Preflight, PreflightError, Status, choose_subscription
from infra.stack_file import StackFileError, load_stack_file, stack_config

OFFLINE_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"  # the names' lengths and characters do not depend on it


def run_check(
    stack_file: Path,
    *,
    offline: bool,
    subscription: str | None = None,
    credential: Callable[[], TokenCredential] | None = None,
    transport: HttpTransport[Any, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        project, stack, settings = load_stack_file(stack_file)
        config = stack_config(settings)
    except (StackFileError, ConfigError) as exc:
        print(str(exc), file=err)
        return 2
    seed = NameSeed(OFFLINE_SUBSCRIPTION, project, stack, config.name_prefix, config.location)
    if problems := name_errors(stack_names(seed)):
        print("Azure would refuse these names:\n  " + "\n  ".join(problems), file=err)
        return 2
    print(f"{stack_file}: valid ({project}/{stack}, {config.location}).", file=out)
    # What `pulumi up` will declare for the fleet the stack names (workloads/capacity/sizing.py), and why.
    print("Ingestion sized for the fleet:\n  " + "\n  ".join(config.sizing.notes), file=out)
    if offline:
        print("Offline: subscription not checked (run without --offline, logged in, to check it).", file=out)
        return 0
    env = os.environ if environ is None else environ
    arm: ArmReader | None = None
    try:
        if credential is None:
            from infra.stream_job_client import deployer_credential

            token_credential = deployer_credential(env).credential
        else:
            token_credential = credential()
        arm = ArmReader(token_credential, transport=transport)
        reader = arm
        chosen = choose_subscription(subscription, settings, env, lambda: reader)
        names = stack_names(NameSeed(chosen, project, stack, config.name_prefix, config.location))
        _print_names(names, out)
        findings = Preflight(arm, chosen, config, names).run()
    except (PreflightError, HttpResponseError) as exc:
        print(f"cannot check the subscription: {exc}", file=err)
        return 1
    finally:
        if arm is not None:
            arm.close()
    print(f"Subscription {chosen}:", file=out)
    for finding in findings:
        print(finding.line(), file=out)
    gaps = [f for f in findings if f.status is Status.GAP]
    print(
        f"{len(gaps)} gap(s) to fix before `pulumi up`." if gaps else "Nothing blocks the first `pulumi up`.", file=out
    )
    return 1 if gaps else 0


def _print_names(names: StackNames, out: TextIO) -> None:
    print(
        f"Names: resource group {names.resource_group}, storage {names.storage_account}, Event Hubs "
        f"{names.event_hubs_namespace}, registry {names.registry}, Batch {names.batch_account}",
        file=out,
    )


app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def check(
    stack_file: Annotated[Path, typer.Argument(help="The stack file, e.g. Pulumi.dev.yaml.")],
    offline: Annotated[
        bool, typer.Option("--offline", help="Only validate the stack file (the program's own config code).")
    ] = False,
    subscription: Annotated[
        str | None,
        typer.Option(
            help="Subscription to check; default: azure-native:subscriptionId, ARM_SUBSCRIPTION_ID, "
            "AZURE_SUBSCRIPTION_ID, else the only one the credential sees."
        ),
    ] = None,
) -> None:
    """Validate a stack file, then check its subscription: resource providers, Batch quotas, global names."""
    raise typer.Exit(run_check(stack_file, offline=offline, subscription=subscription))


if __name__ == "__main__":
    app()
