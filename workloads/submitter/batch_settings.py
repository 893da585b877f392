"""Settings of the Azure Batch backend, read from the environment Pulumi gives the submitter container."""

from __future__ import annotations

import os
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workloads.common import envvars

NODE_START_ALLOWANCE = timedelta(hours=1)
TRAINER_CLIENT_ID = "TRAINER_CLIENT_ID"  # read by the training submission only (``trainer submit --backend batch``)
CLAIM_MARGIN = timedelta(minutes=15)


class BatchSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    account_url: str = Field(pattern=r"^https://")
    pool_id: str = Field(min_length=1)
    scorer_image: str = Field(min_length=1)
    storage_account_url: str = Field(pattern=r"^https://")
    scorer_identity_id: str = Field(min_length=1)  # ARM id of the pool's user-assigned identity
    scorer_client_id: str | None = None  # selects that identity for DefaultAzureCredential in the task
    # Training tasks write models and packs, which the scorer identity may only read: a pool identity allowed to
    # (Storage Blob Data Contributor on ``models``), selected for ``trainer`` tasks; None: the scorer's.
    trainer_client_id: str | None = None
    max_task_retries: int = Field(default=2, ge=0, le=100)
    max_wall_minutes: int = Field(default=30, ge=1, le=10080)
    # Forwarded to tasks; an ingestion-only identifier, "not considered a security token or key" (Azure Monitor docs).
    telemetry_connection_string: str | None = None

    @property
    def job_max_wall(self) -> timedelta:
        """The job's own wall-clock limit: every task tried ``1 + max_task_retries`` times at its limit, plus
        an hour for nodes to be allocated and to pull the image. "If the Job does not complete within the time
        limit, the Batch service terminates it and any Tasks that are still running" (BatchJobConstraints
        .maxWallClockTime, measured from the job's creation): so no task of a revision can still write after it."""
        return timedelta(minutes=self.max_wall_minutes * (self.max_task_retries + 1)) + NODE_START_ALLOWANCE

    @property
    def claim_timeout(self) -> timedelta:
        """After this a Batch revision's claim is abandoned: its job has been terminated by then (job_max_wall),
        and the margin covers the submitter's own steps before it created the job."""
        return self.job_max_wall + CLAIM_MARGIN

    @classmethod
    def from_env(cls) -> BatchSettings:
        names = {
            "account_url": envvars.BATCH_ACCOUNT_URL,
            "pool_id": envvars.BATCH_POOL_ID,
            "scorer_image": envvars.SCORER_IMAGE,
            "storage_account_url": envvars.STORAGE_ACCOUNT_URL,
            "scorer_identity_id": envvars.SCORER_IDENTITY_ID,
            "scorer_client_id": envvars.SCORER_CLIENT_ID,
            "trainer_client_id": TRAINER_CLIENT_ID,
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
