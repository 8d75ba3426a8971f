# syntax=docker/dockerfile:1
# The pipeline's image: CUDA-capable, and the same image runs on a host without a GPU.
#
# Base: a slim Python rather than nvidia/cuda. PyPI's Linux torch wheel brings its own CUDA libraries
# (the nvidia-* wheels it depends on), so all a container needs from the host is the driver, which
# the NVIDIA Container Toolkit mounts in. Without a GPU, `device: auto` falls back to the CPU.
# Python 3.11 matches the project's pinned requirements. Swap the base with --build-arg BASE_IMAGE=...
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# git: DVC keeps its pipeline state and experiments in git. Debian's current git, not a pinned
# version: bookworm drops superseded package versions, so a pin would break the build. A base that
# already has git (an air-gapped mirror's, say) skips the download.
# hadolint ignore=DL3008
RUN if ! command -v git >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*; \
    fi

# A virtual environment: the same on python:3.11-slim and on a Debian python3, which refuses pip
# installs into the system Python (PEP 668).
ENV VIRTUAL_ENV=/opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv

# The pinned requirements, in a layer of their own that code changes do not invalidate.
# - Air-gapped: wheels in ./wheels (see wheels/README.md) and pip uses nothing else.
# - Behind a TLS-intercepting proxy: --secret id=ca_bundle,src=/path/to/ca-certificates.crt
# The developer tools (requirements-dev.txt: pytest, ruff, ...) too, for the `test` service.
COPY requirements.txt requirements-s3.txt requirements-dev.txt /tmp/
RUN --mount=type=bind,source=wheels,target=/tmp/wheels \
    --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi; \
    if ls /tmp/wheels/*.whl >/dev/null 2>&1; then set -- --no-index --find-links=/tmp/wheels; fi; \
    pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt -r /tmp/requirements-s3.txt -r /tmp/requirements-dev.txt "$@"

# Compose runs the container as the host user (HOST_UID), who may have no entry in /etc/passwd:
# git settings go to the system config, and HOME is writable by anyone.
# - safe.directory: the repository is bind-mounted at /work and may belong to another uid.
# - an identity: `dvc exp run` commits experiments to git refs.
# - ~/dvc-storage: where the default DVC remote lives; compose.yaml mounts a named volume there, which
#   starts with this folder's mode, so that any uid can push.
RUN useradd --create-home --uid 1000 --user-group app \
 && mkdir /home/app/dvc-storage \
 && chmod 1777 /home/app /home/app/dvc-storage \
 && git config --system --add safe.directory /work \
 && git config --system user.name "softmax pipeline (container)" \
 && git config --system user.email "pipeline@container.invalid"
ENV HOME=/home/app \
    DVC_NO_ANALYTICS=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# The project, for the `test` service; the pipeline services work on the repository mounted at /work.
WORKDIR /app
COPY pyproject.toml params.yaml dvc.yaml dvc.lock .dvcignore .gitignore ./
COPY README.md Makefile requirements.in requirements.txt requirements-s3.in requirements-s3.txt requirements-dev.in requirements-dev.txt ./
COPY .dvc/config .dvc/.gitignore .dvc/
COPY stages/ stages/
COPY tests/ tests/
COPY scripts/ scripts/
COPY datasets/ datasets/
COPY bench/ bench/
COPY docs/ docs/
COPY metrics/ metrics/
COPY plots/ plots/
COPY predictions/ predictions/

USER 1000:1000
WORKDIR /work
CMD ["dvc", "repro"]
