"""Importing models trained elsewhere: one file per pair, checked, probed and published as ``trainer train`` does.

Where the files come from: a mapping file (CSV with ``device_id,sensor,path`` and optionally ``features``,
paths relative to the mapping file) or the folder layout ``<root>/<device_id>/<sensor>/<one model file>``.

Each model goes through the same gates as a scored one, before anything is published:

- a size cap on what loading may allocate (a skops file's inflated size, a pickle's length);
- skops files load with skops' defaults and the vetted types only (``vetted_types``) plus ``--trusted-type``;
  joblib and pickle files only with ``trust_pickle`` (they can run any code while loading), and are converted to
  skops on the way in, so that scoring never needs pickle; a converted model's types are then checked as a
  skops file's would be;
- the scikit-learn version that fitted it (from scikit-learn's own InconsistentVersionWarning, raised while
  loading an estimator saved under another version) under the version policy;
- a probe: the model scores one row of the pair's features (the pair's latest aggregate when history is given,
  else a row of zeros) and must give a finite score and a flag, with as many features as its metadata names.

A refused model leaves the pair's published model as it was. Accepted ones are published together, with their
shards' packs kept in step (``publishing.publish_with_packs``), so an import is the same form as a training run.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from workloads.common.aggregates import FEATURE_NAMES, KEYS, WINDOW_END
from workloads.common.model_versions import DEFAULT_POLICY, VersionPolicy, runtime_sklearn_version
from workloads.common.modelstore import (
    DEFAULT_MAX_MODEL_MIB,
    MIB,
    ModelError,
    check_loaded,
    check_version,
    load_skops,
    serialise_model,
)
from workloads.common.pairs import Pair
from workloads.scorer.scoring import score_rows
from workloads.training.families import family_of
from workloads.training.publishing import ReadyModel

SKOPS_SUFFIXES: Final = frozenset({".skops"})
PICKLE_SUFFIXES: Final = frozenset({".joblib", ".pkl", ".pickle"})
MODEL_SUFFIXES: Final = SKOPS_SUFFIXES | PICKLE_SUFFIXES


@dataclass(frozen=True)
class ModelFile:
    pair: Pair
    path: Path
    features: tuple[str, ...]


@dataclass(frozen=True)
class ImportOptions:
    features: tuple[str, ...]
    trust_pickle: bool = False
    trusted_types: tuple[str, ...] = ()
    version_policy: VersionPolicy = DEFAULT_POLICY
    max_bytes: int = DEFAULT_MAX_MODEL_MIB * MIB


@dataclass
class ImportReport:
    found: int = 0
    published: dict[Pair, str] = field(default_factory=dict)  # pair -> sha256
    converted: list[Pair] = field(default_factory=list)  # pickles published as skops
    refused: dict[str, str] = field(default_factory=dict)  # pair or file -> "reason: why"
    probed_on: dict[str, int] = field(default_factory=dict)  # "history" / "zeros" -> pairs


def files_from_layout(root: Path, features: Sequence[str]) -> tuple[list[ModelFile], dict[str, str]]:
    """``<root>/<device>/<sensor>/<file>``: one model file per pair folder; what does not fit is refused."""
    found: list[ModelFile] = []
    refused: dict[str, str] = {}
    for folder in sorted(p for p in root.glob("*/*") if p.is_dir()):
        where = str(folder.relative_to(root))
        models = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in MODEL_SUFFIXES)
        try:
            pair = Pair(folder.parent.name, folder.name)
        except ValueError as exc:
            refused[where] = f"bad_pair: {exc}"
            continue
        if len(models) != 1:
            names = ", ".join(p.name for p in models) or "none"
            refused[str(pair)] = (
                f"bad_layout: expected one model file ({', '.join(sorted(MODEL_SUFFIXES))}), found {names}"
            )
            continue
        found.append(ModelFile(pair, models[0], tuple(features)))
    # A model file anywhere else (the root, a device folder, deeper) names no pair: refused, never passed over.
    for stray in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MODEL_SUFFIXES):
        if len(stray.relative_to(root).parts) != 3:
            where = str(stray.relative_to(root))
            refused[where] = f"bad_layout: {where} is not in a <device_id>/<sensor>/ folder, so it names no pair"
    return found, refused


def files_from_mapping(mapping: Path, features: Sequence[str]) -> tuple[list[ModelFile], dict[str, str]]:
    """A CSV of ``device_id,sensor,path[,features]`` (features ``;``-separated); ValueError for a bad header."""
    found: list[ModelFile] = []
    refused: dict[str, str] = {}
    with mapping.open(newline="") as stream:
        reader = csv.DictReader(stream)
        missing = {"device_id", "sensor", "path"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(
                f"{mapping}: the header lacks {sorted(missing)}; expected device_id,sensor,path[,features]"
            )
        seen: set[Pair] = set()
        for line, row in enumerate(reader, start=2):
            try:
                pair = Pair(row["device_id"].strip(), row["sensor"].strip())
                chosen = tuple(f.strip() for f in (row.get("features") or "").split(";") if f.strip()) or tuple(
                    features
                )
                unknown = sorted(set(chosen) - set(FEATURE_NAMES))
                if unknown:
                    raise ValueError(f"unknown feature(s) {unknown}; choose from {list(FEATURE_NAMES)}")
            except (ValueError, AttributeError) as exc:
                refused[f"{mapping.name}:{line}"] = f"bad_mapping: {exc}"
                continue
            if pair in seen:
                refused[f"{mapping.name}:{line}"] = f"bad_mapping: pair {pair} is mapped twice"
                continue
            seen.add(pair)
            found.append(ModelFile(pair, (mapping.parent / row["path"].strip()).resolve(), chosen))
    return found, refused


def probe_rows(history: pd.DataFrame) -> dict[Pair, pd.Series]:
    """Each pair's latest aggregate row: what its model is probed on."""
    if history.empty:
        return {}
    latest = history.sort_values([*KEYS, WINDOW_END]).groupby(list(KEYS), sort=False).tail(1)
    return {Pair(str(row["device_id"]), str(row["sensor"])): row for _, row in latest.iterrows()}


def prepare(file: ModelFile, options: ImportOptions, probe: pd.Series | None) -> tuple[ReadyModel, str]:
    """The model of one file, loaded, version-checked, converted to skops and probed, and what it was probed on
    ("history" or "zeros"); ModelError if refused."""
    try:
        data = file.path.read_bytes()
    except OSError as exc:
        raise ModelError("unreadable_file", f"{file.path}: {exc.strerror or exc}") from None
    estimator, recorded = _load(file.path, data, options)
    check_version(recorded, options.version_policy)
    is_skops = file.path.suffix.lower() in SKOPS_SUFFIXES
    try:
        skops_data = data if is_skops else serialise_model(estimator, options.trusted_types)
    except ModelError:
        raise
    except Exception as exc:  # an object skops cannot write: refused like any other model, the import goes on
        raise ModelError("not_serialisable", f"cannot write it as skops: {type(exc).__name__}: {exc}") from None
    probed_on = _probe(estimator, file.features, probe)
    model = ReadyModel(estimator, skops_data, file.features, family=family_of(estimator), sklearn_version=recorded)
    return model, probed_on


def _load(path: Path, data: bytes, options: ImportOptions) -> tuple[Any, str]:
    """(estimator, the scikit-learn version that saved it): scikit-learn's BaseEstimator.__setstate__ warns with
    InconsistentVersionWarning (original_sklearn_version) when the saved version differs from the runtime's; skops
    restores estimators through the same __setstate__, so both formats tell."""
    from sklearn.exceptions import InconsistentVersionWarning

    suffix = path.suffix.lower()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InconsistentVersionWarning)
        if suffix in SKOPS_SUFFIXES:
            estimator = load_skops(data, options.trusted_types, options.max_bytes)
        elif not options.trust_pickle:
            raise ModelError(
                "untrusted_pickle",
                f"{path.name} is a {suffix[1:]} file, which can run any code while it loads; "
                "import it only if you trust its source, with --trust-pickle (it is published as skops)",
            )
        else:
            if len(data) > options.max_bytes:
                raise ModelError("model_too_large", f"{len(data) / MIB:.1f} MiB, over --max-model-mib")
            import joblib

            try:
                estimator = joblib.load(io.BytesIO(data))  # reads joblib files and plain pickles alike
            except Exception as exc:
                raise ModelError("corrupt_model", f"cannot load {path.name}: {type(exc).__name__}: {exc}") from None
            check_loaded(estimator)  # a skops file is checked on load; a pickle's trees must pass the same
    versions = {
        str(w.message.original_sklearn_version) for w in caught if isinstance(w.message, InconsistentVersionWarning)
    }
    if len(versions) > 1:
        raise ModelError("version_mismatch", f"parts of the model were saved by scikit-learn {sorted(versions)}")
    return estimator, versions.pop() if versions else runtime_sklearn_version()


def _probe(estimator: Any, features: Sequence[str], probe: pd.Series | None) -> str:
    """Score one row as the scorer would; ModelError("probe_failed") if the model cannot. The row is the pair's
    latest aggregate when it has finite features, else zeros; returns which."""
    expected = getattr(estimator, "n_features_in_", None)
    if expected is not None and expected != len(features):
        raise ModelError(
            "bad_features", f"the model reads {expected} feature(s), the import names {len(features)}: {list(features)}"
        )
    row = (
        np.full((1, len(features)), np.nan)
        if probe is None
        else probe[list(features)].to_numpy(dtype="float64")[None, :]
    )
    source = "history" if np.isfinite(row).all() else "zeros"
    if source == "zeros":
        row = np.zeros((1, len(features)))
    try:
        scores, flags = score_rows(estimator, row)
    except Exception as exc:
        raise ModelError(
            "probe_failed", f"scoring one row failed: {type(exc).__name__}: {' '.join(str(exc).split())}"
        ) from None
    if scores.shape != (1,) or flags.shape != (1,) or not np.isfinite(scores).all():
        raise ModelError("probe_failed", f"scoring one row gave {scores!r}, expected one finite score")
    return source


def import_models(
    files: Sequence[ModelFile], options: ImportOptions, probes: Mapping[Pair, pd.Series]
) -> tuple[dict[Pair, ReadyModel], ImportReport]:
    """Every file prepared (nothing published yet); the report says what was refused and why."""
    report = ImportReport(found=len(files))
    ready: dict[Pair, ReadyModel] = {}
    for file in files:
        try:
            ready[file.pair], source = prepare(file, options, probes.get(file.pair))
        except ModelError as exc:
            report.refused[str(file.pair)] = f"{exc.reason}: {exc}"
            continue
        report.probed_on[source] = report.probed_on.get(source, 0) + 1
        if file.path.suffix.lower() in PICKLE_SUFFIXES:
            report.converted.append(file.pair)
    return ready, report
