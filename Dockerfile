# syntax=docker/dockerfile:1
#
# Runtime image for oxeo-flows work-pool workers and flow runs (docker and kubernetes work pools).
#
# The image holds the runtime dependencies only: flow code is pulled from git at run time by the
# deployment's `prefect.deployments.steps.git_clone` pull step (git token from a Prefect Secret block).
# The oxeo-flows package itself is installed as well, because installing it from its own wheel is what
# makes the dependency set exactly pyproject.toml's `[project].dependencies` (nothing is retyped here) and
# it provides the `oxeo-flows` CLI. See docs/DOCKER.md.
#
# No secrets are baked in: tokens, passwords and keys are injected at run time (Prefect Secret blocks or
# environment variables set on the work pool / job), never through ARG, ENV or COPY.
#
# Build (BuildKit, the default since Docker 23):
#   docker build -t ghcr.io/<org>/oxeo-flows:<version> .

# --- builder: wheels for the project and every runtime dependency --------------------------------------
FROM python:3.11-slim AS builder

WORKDIR /build
# Only what the build backend needs; .dockerignore keeps everything else out of the context anyway.
COPY pyproject.toml README.md ./
COPY src/ ./src/

# rasterio, pyproj and shapely wheels bundle GDAL, PROJ and GEOS: no apt GDAL needed.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --wheel-dir /wheels .

# --- runtime --------------------------------------------------------------------------------------------
FROM python:3.11-slim AS runtime

ARG SOURCE_URL=https://github.com/oxeo/oxeo-flows
LABEL org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.title="oxeo-flows" \
      org.opencontainers.image.description="Runtime dependencies for the oxeo-flows Prefect 3 flows" \
      org.opencontainers.image.licenses="MIT"

ENV DO_NOT_TRACK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# git: Prefect's git_clone pull step shells out to it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Non-root user; its home holds PREFECT_HOME (~/.prefect).
RUN groupadd --gid 10001 oxeo \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin oxeo \
    && mkdir -p /opt/oxeo /opt/venv \
    && chown oxeo:oxeo /opt/oxeo /opt/venv

# Everything below runs as the unprivileged user. The virtualenv belongs to it, so the deployment's pull
# step can `pip install --no-deps` the freshly cloned code over the packaged copy at run time.
USER oxeo
RUN python -m venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Exactly the project's dependency list, resolved from the wheels built above. The wheel directory is
# bind-mounted from the builder stage rather than copied, so it adds no layer to the image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels oxeo-flows

# Flow runs start here; the git_clone pull step clones the repository into this directory.
WORKDIR /opt/oxeo

CMD ["oxeo-flows", "flows"]
