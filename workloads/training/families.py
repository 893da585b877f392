"""The anomaly-model families the trainer builds by name, their hyper-parameters, and users' own factories.

A :class:`ModelSpec` is what ``trainer train --model NAME --param key=value`` says, and what a training
task's manifest carries: a family name (or ``module:function``) and JSON scalars. It is validated before any
history is read: unknown parameters are named with the estimator's own, and values are checked by fitting the
estimator once on a small synthetic matrix (scikit-learn validates every parameter's type and range in
``fit``), so a typo fails in a second, not after an hour of reading history.

Each family is its scikit-learn outlier detector with this platform's defaults, behind a StandardScaler
where its distances depend on the features' scales (the SVM's kernel, LOF's neighbours); tree ensembles and
the robust covariance of EllipticEnvelope are unaffected by scaling, so they get none.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

from workloads.common.model_metadata import family_of
from workloads.common.modelstore import ModelError, serialise_model

__all__ = ["FAMILIES", "EstimatorFactory", "ModelSpec", "default_estimator", "family_of", "parse_param"]

ParamValue = str | int | float | bool | None
EstimatorFactory = Callable[[], Any]

DEFAULT_FAMILY: Final = "ocsvm"
_FACTORY_PATH: Final = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
_PARAM_NAME: Final = re.compile(r"[A-Za-z_]\w*")
_PROBE_ROWS: Final = 64


@dataclass(frozen=True)
class Family:
    """One family: its detector with our defaults, whether it is scaled, and parameters a user may not set."""

    detector: Callable[[], Any]
    scaled: bool
    summary: str
    fixed: Mapping[str, tuple[object, str]] = field(default_factory=dict)  # name -> (value, why)


def _ocsvm() -> Any:
    """nu bounds the share of training windows treated as outliers; gamma 0.1 (on standardised features) is
    smoother than scikit-learn's "scale" (1/n_features = 0.25), which overfits a day of windows: on the demo
    fleet it halves false alarms for a 3-point loss of recall."""
    from sklearn.svm import OneClassSVM

    return OneClassSVM(nu=0.01, gamma=0.1)


def _iforest() -> Any:
    """A fixed random_state: retraining on the same history gives the same model (and checksum)."""
    from sklearn.ensemble import IsolationForest

    return IsolationForest(random_state=0)


def _lof() -> Any:
    from sklearn.neighbors import LocalOutlierFactor

    return LocalOutlierFactor(novelty=True)


def _elliptic() -> Any:
    from sklearn.covariance import EllipticEnvelope

    return EllipticEnvelope(random_state=0)


FAMILIES: Final[dict[str, Family]] = {
    "ocsvm": Family(_ocsvm, scaled=True, summary="StandardScaler + OneClassSVM(nu=0.01, gamma=0.1)"),
    "iforest": Family(_iforest, scaled=False, summary="IsolationForest(random_state=0)"),
    "lof": Family(
        _lof,
        scaled=True,
        summary="StandardScaler + LocalOutlierFactor(novelty=True)",
        fixed={"novelty": (True, "only a novelty-mode LOF can score windows it was not fitted on")},
    ),
    "elliptic": Family(_elliptic, scaled=False, summary="EllipticEnvelope(random_state=0)"),
}


def parse_param(text: str) -> tuple[str, ParamValue]:
    """``key=value`` with the value read as JSON when it is a JSON scalar (``0.05``, ``200``, ``true``,
    ``null``), else kept as text (``auto``, ``rbf``)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not _PARAM_NAME.fullmatch(key):
        raise ValueError(f"invalid --param {text!r}: expected key=value, e.g. nu=0.05")
    try:
        value = json.loads(raw)
    except ValueError:
        return key, raw
    if isinstance(value, (list, dict)):
        raise ValueError(f"invalid --param {text!r}: values are numbers, true/false, null or text")
    return key, value


class ModelSpec(BaseModel):
    """Which estimator to fit per pair: a family by name, or a user's ``module:function`` factory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: str = DEFAULT_FAMILY
    params: dict[str, ParamValue] = {}

    @field_validator("family")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in FAMILIES and not _FACTORY_PATH.fullmatch(value):
            raise ValueError(
                f"unknown model {value!r}: choose one of {', '.join(FAMILIES)}, or give your own factory as "
                "module:function (importable where the trainer runs)"
            )
        return value

    @property
    def is_custom(self) -> bool:
        return self.family not in FAMILIES

    def factory(self, n_features: int = 4, trusted_types: Sequence[str] = ()) -> EstimatorFactory:
        """A function returning a fresh, unfitted estimator; ValueError for a wrong parameter or factory, or for a
        model the scorer could not load (a type outside the vetted list and ``trusted_types``), found by fitting
        once on ``n_features`` synthetic columns (the features the models will read)."""
        make = _custom(self.family, self.params) if self.is_custom else _family(self.family, self.params)
        _validate(self.family, make, n_features, trusted_types)
        return make


def _family(name: str, params: Mapping[str, ParamValue]) -> EstimatorFactory:
    family = FAMILIES[name]
    accepted = family.detector().get_params(deep=False)
    for key, value in params.items():
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"--param {key}: {type(family.detector()).__name__} has no parameter {key!r}{hint}; "
                f"it takes {', '.join(sorted(accepted))}"
            )
        if key in family.fixed and value != family.fixed[key][0]:
            fixed, why = family.fixed[key]
            raise ValueError(f"--param {key}={json.dumps(value)}: {name} needs {key}={json.dumps(fixed)} ({why})")

    def make() -> Any:
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        detector = family.detector().set_params(**params)
        return make_pipeline(StandardScaler(), detector) if family.scaled else detector

    return make


def _custom(path: str, params: Mapping[str, ParamValue]) -> EstimatorFactory:
    module_name, _, attribute = path.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import the model factory {path}: {exc}") from None
    if not callable(function):
        raise ValueError(f"the model factory {path} is a {type(function).__name__}, not a function")
    try:
        inspect.signature(function).bind(**params)
    except TypeError as exc:
        raise ValueError(f"--param does not fit {path}{inspect.signature(function)}: {exc}") from None
    except ValueError:
        pass  # a builtin without a signature: the call below says what is wrong
    return lambda: function(**params)


def _validate(name: str, make: EstimatorFactory, n_features: int, trusted_types: Sequence[str]) -> None:
    """Build, fit once on a small synthetic matrix and serialise: scikit-learn checks every parameter in ``fit``,
    a user's factory shows here whether it returns an outlier detector at all, and serialising shows whether
    skops may load it (e.g. LOF with metric=canberra needs a distance class outside the vetted list)."""
    try:
        estimator = make()
    except Exception as exc:
        raise ValueError(f"{name}: building the estimator failed: {type(exc).__name__}: {exc}") from None
    missing = [m for m in ("fit", "predict") if not callable(getattr(estimator, m, None))]
    if missing:
        raise ValueError(f"{name} returned a {type(estimator).__name__}, which lacks {' and '.join(missing)}")
    probe = np.random.default_rng(0).normal(size=(_PROBE_ROWS, n_features))
    try:
        fitted = make().fit(probe)
        fitted.predict(probe[:1])
    except Exception as exc:  # InvalidParameterError (a ValueError or TypeError) and whatever a factory raises
        raise ValueError(f"{name}: {' '.join(str(exc).split())}") from None
    try:
        serialise_model(fitted, trusted_types)
    except ModelError as exc:
        raise ValueError(f"{name}: {exc}") from None


def default_estimator() -> Any:
    """The default family's unfitted estimator (StandardScaler + OneClassSVM), for tests and tools."""
    return _family(DEFAULT_FAMILY, {})()
