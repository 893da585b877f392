"""Which scikit-learn versions may load a model trained under another: the version policy.

A model's metadata records the scikit-learn that fitted it. scikit-learn does not support loading an
estimator under another version than the one that saved it (its "Model persistence" guide, on
InconsistentVersionWarning: unpickling under an inconsistent version warns, and the results are not
guaranteed): a different minor version can change an estimator's attributes or arithmetic without an
error. So the scorer compares versions before it loads a model, and refuses by default one whose minor
version differs (``version_mismatch``, counted per pair).

Only the installed distribution's metadata is read (``importlib.metadata``), never scikit-learn itself, so a
scorer that serves every pair from its packs still does not import it.
"""

from __future__ import annotations

import importlib.metadata
import re
from enum import StrEnum
from functools import cache
from typing import Final

_VERSION: Final = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


class VersionPolicy(StrEnum):
    """How much of the recorded version must equal the runtime's."""

    EXACT = "exact"  # major.minor.patch
    MINOR = "minor"  # major.minor (the default)
    MAJOR = "major"  # major only
    ANY = "any"  # never refuse (the operator vouches for the models)


DEFAULT_POLICY: Final = VersionPolicy.MINOR
_PARTS: Final = {VersionPolicy.EXACT: 3, VersionPolicy.MINOR: 2, VersionPolicy.MAJOR: 1, VersionPolicy.ANY: 0}


@cache
def runtime_sklearn_version() -> str:
    """The installed scikit-learn's version, from its distribution metadata (no import of sklearn)."""
    return importlib.metadata.version("scikit-learn")


def _parts(version: str) -> tuple[int, int, int] | None:
    match = _VERSION.match(version)
    if match is None:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


def version_mismatch(recorded: str, policy: VersionPolicy, runtime: str | None = None) -> str | None:
    """Why a model recorded under ``recorded`` may not load here, or None when the policy allows it.

    An unparsable recorded version is refused under every policy but ``any``: nothing can be compared.
    """
    if policy is VersionPolicy.ANY:
        return None
    runtime = runtime or runtime_sklearn_version()
    mine, theirs = _parts(runtime), _parts(recorded)
    if theirs is None or mine is None:
        return f"model records scikit-learn version {recorded!r}, which cannot be compared with {runtime}"
    width = _PARTS[policy]
    if mine[:width] == theirs[:width]:
        return None
    return (
        f"model was trained with scikit-learn {recorded}, this runtime has {runtime} (policy {policy.value}: the "
        f"{'version' if width == 3 else policy.value + ' version'} must match); retrain or re-import it under "
        f"{runtime}, then run `trainer pack`, or relax the policy (--sklearn-version-policy)"
    )
