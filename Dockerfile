# syntax=docker/dockerfile:1
# The sitsmon image: one image for every sitsmon service of compose.yaml (ingest, monitor, dashboard),
# the subcommand given as the container's command (ENTRYPOINT is `sitsmon`).
#
#   docker build -t sitsmon .                                  # CPU build of torch (the default)
#   docker build -t sitsmon:cuda --build-arg TORCH=cuda .      # CUDA build (TORCH_CUDA=cu128 by default)
#
# torch is installed by the same function as scripts/setup.sh (install_torch), so the image and a
# developer machine pick their build the same way; SITSMON_TORCH_STRICT=1 makes a wrong build fail
# the image instead of warning. The CUDA image needs the NVIDIA container toolkit on the host and a
# GPU reservation in compose (docs/deploy.md).
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm

ARG TORCH=cpu
ARG TORCH_CUDA=cu128
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    OMP_WAIT_POLICY=PASSIVE \
    SITSMON_PATHS__DATA_DIR=/data

# curl: setup.sh's index probe; libgomp1: OpenMP of numba and torch's CPU kernels.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && python -m venv /opt/venv

WORKDIR /opt/sitsmon
COPY scripts/setup.sh scripts/setup.sh
RUN SITSMON_TORCH_CUDA="$TORCH_CUDA" SITSMON_TORCH_STRICT=1 \
    bash -c 'source scripts/setup.sh && install_torch /opt/venv "$1"' _ "$TORCH"

# Dependencies change less often than the code: the layer above is reused across code changes.
COPY pyproject.toml README.md ./
COPY contracts contracts
COPY ingest ingest
COPY sits sits
COPY alerts alerts
COPY monitor monitor
COPY dashboards dashboards
COPY sitsmon sitsmon
RUN pip install . && sitsmon --version

RUN useradd --system --uid 10001 --home-dir /data --no-create-home sitsmon \
 && mkdir -p /data && chown sitsmon /data
USER sitsmon
WORKDIR /data
VOLUME ["/data"]
# 8000: the dashboard (sitsmon serve). The monitor's metrics port binds the container's loopback
# (monitor/health.py): its healthcheck reads it from inside.
EXPOSE 8000
ENTRYPOINT ["sitsmon"]
CMD ["--help"]
