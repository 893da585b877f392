"""`make scan`: checkov over an ARM export of each stack's resources, with the written skips applied.

Why this shape: checkov cannot read a Pulumi program, but the tests' Pulumi mocks already run the real program
for any config and record every resource with its real inputs (``tests/infra/conftest.py``).
``infra/arm_export.py`` turns those into an ARM template, which checkov's ARM framework scans. So the scan
judges exactly what each ``Pulumi.<stack>.yaml`` would deploy, offline and without an Azure login. It lives in
``scripts/`` because it imports the mocks from ``tests/``.

checkov runs its ARM policies plus ours (``security/checkov-policies``: settings the platform relies on that
checkov checks only for Terraform). Per stack it writes ``build/security/<stack>.json`` (the template) and
``<stack>.checkov.json`` (checkov's report), then ``summary.json`` with the counts. Exit status: 0 when every
failed check is skipped with a reason in ``security/checkov-skips.yaml``; 1 on an unjustified failure, a stale
skip (one that matches no failure any more), or a scan that did not see the whole template; 2 when checkov is
not installed (``make setup-checkov``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any

import pulumi
import typer
import yaml
from pydantic import BaseModel, ConfigDict, StringConstraints, TypeAdapter, ValidationError
from rich.console import Console
from rich.table import Table

from infra.arm_export import skip_reason, to_arm_template
from infra.config import parse_config, raw_stack_config
from infra.platform import BatchScoringPlatform
from tests.infra.conftest import Exchanges, Mocks, Recorded

ROOT = Path(__file__).resolve().parents[1]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
SKIPS = ROOT / "security" / "checkov-skips.yaml"
POLICIES = ROOT / "security" / "checkov-policies"
OUT = ROOT / "build" / "security"
SETUP_HINT = "run `make setup-checkov` (checkov lives in its own venv, .venv-checkov)"
ALL_STACKS = "all"
# Offline and quiet: no platform mapping download, no PyPI version check.
CHECKOV_ENV = {"BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE"}


class ScanError(RuntimeError):
    """The scan could not judge a stack (checkov missing or crashed, a template it did not fully read)."""


# --- inputs: stacks, resources, skips ---------------------------------------------------------------------------


def stacks(root: Path = ROOT) -> list[str]:
    """Every stack with a ``Pulumi.<stack>.yaml``."""
    return sorted(path.name.removeprefix("Pulumi.").removesuffix(".yaml") for path in root.glob("Pulumi.*.yaml"))


def stack_config(stack: str, root: Path = ROOT) -> dict[str, Any]:
    """The stack's ``batchscoring:*`` keys as Pulumi hands them to the program (values as text, then decoded)."""
    config = (yaml.safe_load((root / f"Pulumi.{stack}.yaml").read_text()) or {}).get("config") or {}
    secure = sorted(key for key, value in config.items() if isinstance(value, dict) and "secure" in value)
    if secure:
        raise ScanError(f"Pulumi.{stack}.yaml: secret values cannot be read offline: {', '.join(secure)}")
    return raw_stack_config({key: v if isinstance(v, str) else json.dumps(v) for key, v in config.items()})


def capture(stack: str, raw_config: dict[str, Any]) -> list[Recorded]:
    """Every resource the real program declares for this stack and config, with its inputs (Pulumi mocks)."""
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, preview=False)

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> pulumi.Output[list[Any]]:
        platform = BatchScoringPlatform("batchscoring", parse_config(raw_config), stack, token_exchanger=Exchanges())
        return pulumi.Output.all(*platform.outputs.values())

    program()
    return mocks.resources


Check = Annotated[str, StringConstraints(pattern=r"^CKV2?_[A-Z0-9]+_\d+$")]
OneLine = Annotated[str, StringConstraints(pattern=r"^[^\n]+$", min_length=10, strip_whitespace=True)]


class Skip(BaseModel):
    """One accepted finding: ``check`` on the resources ``resource`` matches (fnmatch), and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    check: Check
    resource: Annotated[str, StringConstraints(min_length=1)]
    reason: OneLine

    def matches(self, finding: Finding) -> bool:
        return finding.check_id == self.check and fnmatchcase(finding.resource, self.resource)


SkipFile = TypeAdapter(dict[str, list[Skip]])


def load_skips(path: Path, known_stacks: Sequence[str]) -> dict[str, list[Skip]]:
    """The skip file by stack key (``all`` or a stack name); every invalid entry is reported with its location."""
    try:
        skips = SkipFile.validate_python(yaml.safe_load(path.read_text()) or {})
    except ValidationError as exc:
        lines = [f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ScanError(f"{path}: invalid skip file:\n  " + "\n  ".join(lines)) from exc
    unknown = sorted(set(skips) - {ALL_STACKS, *known_stacks})
    if unknown:
        raise ScanError(f"{path}: no Pulumi.<stack>.yaml for {', '.join(unknown)} (keys: all or a stack name)")
    return skips


# --- checkov ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    check_id: str
    check_name: str
    resource: str  # checkov's "<ARM type>.<ARM name>"


@dataclass(frozen=True)
class CheckovResults:
    passed: list[Finding]
    failed: list[Finding]
    resource_count: int
    version: str
    raw: dict[str, Any] = field(repr=False)


def _findings(checks: list[dict[str, Any]]) -> list[Finding]:
    return [Finding(str(c["check_id"]), str(c.get("check_name", "")), str(c["resource"])) for c in checks]


def run_checkov(template: Path, checkov: Path = CHECKOV, policies: Path = POLICIES) -> CheckovResults:
    """checkov's ARM checks (and ours, from ``policies``) on one template; failures are judged by the caller."""
    if not checkov.exists():
        raise FileNotFoundError(f"checkov not found at {checkov}: {SETUP_HINT}")
    command = [str(checkov), "--framework", "arm", "--skip-download", "--soft-fail", "--output", "json"]
    command += ["--external-checks-dir", str(policies), "-f", str(template)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **CHECKOV_ENV}, check=False)
    if done.returncode != 0:  # --soft-fail: failed checks exit 0, so anything else is checkov itself failing
        raise ScanError(f"checkov exited {done.returncode} on {template}:\n{done.stderr[-4000:]}")
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    arm = next((r for r in reports if r.get("check_type") == "arm"), None)
    if arm is None:  # checkov reports no framework at all when the file had no resource it could read
        raise ScanError(f"checkov read no ARM resource in {template}:\n{done.stdout[-2000:]}")
    results, summary = arm.get("results", {}), arm.get("summary", {})
    if results.get("parsing_errors"):
        raise ScanError(f"checkov could not parse {results['parsing_errors']}")
    return CheckovResults(
        passed=_findings(results.get("passed_checks", [])),
        failed=_findings(results.get("failed_checks", [])),
        resource_count=int(summary.get("resource_count", 0)),
        version=str(summary.get("checkov_version", "")),
        raw=arm,
    )


# --- judging ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackReport:
    stack: str
    resources: int
    passed: list[Finding]
    skipped: list[tuple[Finding, Skip]]
    unjustified: list[Finding]
    stale: list[Skip]
    left_out: dict[str, int]  # resource type -> how many were not exported (not Azure resources)
    checkov_version: str = ""

    @property
    def ok(self) -> bool:
        return not self.unjustified and not self.stale

    def counts(self) -> dict[str, int | bool]:
        return {
            "resources": self.resources,
            "passed": len(self.passed),
            "failed": len(self.skipped) + len(self.unjustified),
            "skipped": len(self.skipped),
            "unjustified": len(self.unjustified),
            "stale_skips": len(self.stale),
            "ok": self.ok,
        }


def judge(stack: str, results: CheckovResults, skips: dict[str, list[Skip]], resources: int = 0) -> StackReport:
    """Split the stack's failures into skipped (first matching entry) and unjustified; find entries that match
    no failure of this stack (stale), among those that apply to it (``all`` and the stack's own)."""
    applicable = [*skips.get(ALL_STACKS, []), *skips.get(stack, [])]
    skipped: list[tuple[Finding, Skip]] = []
    unjustified: list[Finding] = []
    for finding in results.failed:
        entry = next((s for s in applicable if s.matches(finding)), None)
        if entry is None:
            unjustified.append(finding)
        else:
            skipped.append((finding, entry))
    stale = [s for s in applicable if not any(s.matches(f) for f in results.failed)]
    return StackReport(stack, resources, results.passed, skipped, unjustified, stale, {}, results.version)


def scan_stack(stack: str, skips: dict[str, list[Skip]], out: Path, checkov: Path = CHECKOV) -> StackReport:
    """Capture, export, write, scan and judge one stack."""
    recorded = capture(stack, stack_config(stack))
    template = to_arm_template(recorded)
    path = out / f"{stack}.json"
    path.write_text(json.dumps(template, indent=2) + "\n")
    results = run_checkov(path, checkov)
    (out / f"{stack}.checkov.json").write_text(json.dumps(results.raw, indent=2) + "\n")
    # checkov counts resources by "<type>.<name>"; extension resources (locks) may share a name at other scopes.
    distinct = len({(r["type"], r["name"]) for r in template["resources"]})
    if results.resource_count != distinct:
        raise ScanError(f"{stack}: checkov read {results.resource_count} of the template's {distinct} resources")
    report = judge(stack, results, skips, len(template["resources"]))
    left_out = Counter(r.typ for r in recorded if skip_reason(r.typ) is not None)
    return replace(report, left_out=dict(sorted(left_out.items())))


def scan(
    stack_names: Sequence[str] | None = None,
    out: Path = OUT,
    skips_path: Path = SKIPS,
    checkov: Path = CHECKOV,
    console: Console | None = None,
) -> int:
    """Scan the stacks (default: all), print a table per stack, write the summary; the exit status (see module)."""
    console = console or Console(width=None if sys.stdout.isatty() else 160)  # CI logs: no 80-column wrapping
    known = stacks()
    if not checkov.exists():
        console.print(f"[red]checkov not found at {checkov}[/red]: {SETUP_HINT}")
        return 2
    try:
        skips = load_skips(skips_path, known)
        out.mkdir(parents=True, exist_ok=True)
        reports = [scan_stack(stack, skips, out, checkov) for stack in (stack_names or known)]
    except ScanError as exc:
        console.print(f"[red]security scan failed:[/red] {exc}")
        return 1
    for report in reports:
        print_report(report, console)
    summary = {
        "checkov": sorted({r.checkov_version for r in reports}),
        "stacks": {r.stack: r.counts() for r in reports},
        "ok": all(r.ok for r in reports),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    console.print(f"templates, checkov reports and summary.json in {out}")
    return 0 if summary["ok"] else 1


def print_report(report: StackReport, console: Console) -> None:
    counts = report.counts()
    title = (
        f"checkov: {report.stack} ({counts['resources']} resources): {counts['passed']} passed, "
        f"{counts['failed']} failed = {counts['skipped']} skipped with a reason + "
        f"{counts['unjustified']} unjustified; {counts['stale_skips']} stale skips"
    )
    table = Table(title=title, title_justify="left")
    for column in ("check", "resource", "status", "reason / check"):
        table.add_column(column, overflow="fold")
    for finding in report.unjustified:
        table.add_row(finding.check_id, finding.resource, "[red]UNJUSTIFIED[/red]", finding.check_name)
    for skip in report.stale:
        table.add_row(skip.check, skip.resource, "[red]STALE SKIP[/red]", "matches no failed check: remove it")
    for finding, skip in report.skipped:
        table.add_row(finding.check_id, finding.resource, "skipped", skip.reason)
    for finding in report.passed:
        table.add_row(finding.check_id, finding.resource, "[green]passed[/green]", finding.check_name)
    console.print(table)
    by_reason: dict[str, list[str]] = {}
    for typ, count in report.left_out.items():
        by_reason.setdefault(str(skip_reason(typ)), []).append(f"{typ} x{count}")
    for reason, types in by_reason.items():
        console.print(f"  not exported, {reason}: {', '.join(types)}")


app = typer.Typer(add_completion=False)


@app.command()
def run(
    stack: Annotated[
        list[str] | None, typer.Option(help="Stack to scan (repeatable); default: every Pulumi.<stack>.yaml.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where templates, checkov reports and summary.json go.")] = OUT,
    skips: Annotated[Path, typer.Option(help="The skip file: accepted findings with their reasons.")] = SKIPS,
    checkov: Annotated[Path, typer.Option(help="The checkov executable (make setup-checkov).")] = CHECKOV,
) -> None:
    """checkov over an ARM export of each stack; exit 1 on a failed check without a written reason, or a stale skip."""
    raise typer.Exit(scan(stack, out, skips, checkov))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
