"""Model metadata, stored as the model blob's own metadata.

Keeping it on the blob (rather than in a second document) makes a model and its description one
atomic write and one GET: they can never disagree, and a scorer pays a single round trip per model.
This module has no scikit-learn dependency, so the submitter can list models without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum

from azure.storage.blob import ContainerClient
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from workloads.common.blob_listing import list_blobs_with_metadata
from workloads.common.layout import pair_from_model_blob
from workloads.common.pairs import Pair


class ModelFormat(StrEnum):
    SKOPS = "skops"
    PICKLE = "pickle"  # only ever loaded when the operator passes --trust-pickle


class ModelMetadata(BaseModel):
    model_config = ConfigDict(frozen=True)

    format: ModelFormat
    sha256: str
    features: tuple[str, ...]
    estimator: str
    sklearn_version: str
    family: str | None = None  # ocsvm, iforest, lof, elliptic, a factory's module:function, or a type's path
    trained_at: datetime
    training_start: datetime | None = None
    training_end: datetime | None = None
    training_rows: int | None = None

    @field_validator("features", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return tuple(value.split(",")) if isinstance(value, str) else value

    def to_blob_metadata(self) -> dict[str, str]:
        """Blob metadata values are ASCII strings; lists become comma-joined."""
        fields = self.model_dump(mode="json", exclude_none=True)
        fields["features"] = ",".join(self.features)
        return {key: str(value) for key, value in fields.items()}

    @classmethod
    def from_blob_metadata(cls, metadata: Mapping[str, str]) -> ModelMetadata:
        try:
            return cls.model_validate(dict(metadata))
        except ValidationError as exc:
            raise ValueError(f"invalid model metadata: {exc.error_count()} error(s): {exc}") from None


_FAMILIES = {
    "OneClassSVM": "ocsvm",
    "IsolationForest": "iforest",
    "LocalOutlierFactor": "lof",
    "EllipticEnvelope": "elliptic",
}


def family_of(estimator: object) -> str:
    """The family name of a fitted model (its last pipeline step's type), or that type's dotted path: what the
    metadata records for a model whose family nobody named (an import, a factory's output)."""
    steps = getattr(estimator, "steps", None)
    final = steps[-1][1] if isinstance(steps, list) and steps else estimator
    kind = type(final)
    if kind.__module__.startswith("sklearn.") and kind.__name__ in _FAMILIES:
        return _FAMILIES[kind.__name__]
    return f"{kind.__module__}.{kind.__qualname__}"


def list_models(models: ContainerClient) -> dict[Pair, ModelMetadata | str]:
    """Every published model with its metadata, from one listing (no per-model GET).

    A model whose metadata does not parse maps to the error text, so planners can report it.
    """
    found: dict[Pair, ModelMetadata | str] = {}
    for blob in list_blobs_with_metadata(models):
        pair = pair_from_model_blob(blob.name)
        if pair is None:
            continue
        try:
            found[pair] = ModelMetadata.from_blob_metadata(blob.metadata)
        except ValueError as exc:
            found[pair] = str(exc)
    return found
