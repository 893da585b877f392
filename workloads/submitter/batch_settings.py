"""Settings of the Azure Batch backend, read from the environment Pulumi gives the submitter container."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workloads.common import envvars


class BatchSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    account_url: str = Field(pattern=r"^https://")
    pool_id: str = Field(min_length=1)
    scorer_image: str = Field(min_length=1)
    storage_account_url: str = Field(pattern=r"^https://")
    scorer_identity_id: str = Field(min_length=1)  # ARM id of the pool's user-assigned identity
    scorer_client_id: str | None = None  # selects that identity for DefaultAzureCredential in the task
    max_task_retries: int = Field(default=2, ge=0, le=100)
    max_wall_minutes: int = Field(default=30, ge=1, le=10080)
    # Forwarded to tasks; an ingestion-only identifier, "not considered a security token or key" (Azure Monitor docs).
    telemetry_connection_string: str | None = None

    @classmethod
    def from_env(cls) -> BatchSettings:
        names = {
            "account_url": envvars.BATCH_ACCOUNT_URL,
            "pool_id": envvars.BATCH_POOL_ID,
            "scorer_image": envvars.SCORER_IMAGE,
            "storage_account_url": envvars.STORAGE_ACCOUNT_URL,
            "scorer_identity_id": envvars.SCORER_IDENTITY_ID,
            "scorer_client_id": envvars.SCORER_CLIENT_ID,
            "max_task_retries": envvars.TASK_MAX_RETRIES,
            "max_wall_minutes": envvars.TASK_MAX_WALL_MINUTES,
            "telemetry_connection_string": envvars.APPINSIGHTS_CONNECTION_STRING,
        }
        values = {field: os.environ[env] for field, env in names.items() if os.environ.get(env)}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(f"{names[str(e['loc'][0])]}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"Batch backend settings are incomplete or invalid: {problems}") from None
