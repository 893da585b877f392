# Both workload images, one stage per concern, a target per image (pulumi-docker builds a target):
#   docker build --target scorer -t scorer .        # what each Azure Batch task runs
#   docker build --target submitter -t submitter .  # started hourly by the Logic App (Azure Container Instances)
# BASE_IMAGE must provide python3 (3.11+) with venv; tests substitute a locally built Debian base.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS base
LABEL org.opencontainers.image.source="https://github.com/batchscoring/batchscoring"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies are installed from pyproject.toml alone with a stub package, so code changes reuse that layer;
# then only the code an image needs: no Pulumi, no infra.
COPY pyproject.toml ./
RUN mkdir workloads && touch README.md workloads/__init__.py
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin app

FROM base AS scorer
LABEL org.opencontainers.image.title="batchscoring-scorer" \
      org.opencontainers.image.description="Scores a chunk of device/sensor pairs for one hour"
# One task per Batch task slot (taskSlotsPerNode = cores): one BLAS thread each, or N tasks would
# each start N threads on N cores.
ENV OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
RUN pip install ".[scoring,telemetry]"
COPY workloads/__init__.py workloads/__init__.py
COPY workloads/common workloads/common
COPY workloads/scorer workloads/scorer
# Training jobs run on the same pool and image: their Batch tasks set `--entrypoint trainer` in the container
# run options (workloads/submitter/batch.py, BatchBackend.container_task).
COPY workloads/training workloads/training
RUN pip install --no-deps --force-reinstall . && rm -rf build *.egg-info
USER 10001
ENTRYPOINT ["scorer"]

FROM base AS submitter
LABEL org.opencontainers.image.title="batchscoring-submitter" \
      org.opencontainers.image.description="Plans an hour, chunks pairs into tasks and submits them to Azure Batch"
# The Batch SDK, not scikit-learn.
RUN pip install ".[batch,telemetry]"
COPY workloads/__init__.py workloads/__init__.py
COPY workloads/common workloads/common
COPY workloads/submitter workloads/submitter
RUN pip install --no-deps --force-reinstall . && rm -rf build *.egg-info
USER 10001
ENTRYPOINT ["submitter"]
CMD ["reconcile"]
