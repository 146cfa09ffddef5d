# The rebate engine image: the worker and the production commands, nothing else.
#   docker run IMAGE worker | topics | seed FILE | admin ...
# It holds engine/, agents/ and schemas/ only: the tools (harness/: replay, simulate, bench,
# demo, the embedded runtime) are never in it. `--target tools` builds the same image plus the
# tools, for the compose file's simulator:
#   docker run TOOLS_IMAGE simulate --rate N --accounts M
# Configuration comes from the environment only (KAFKA_BOOTSTRAP_SERVERS, REDIS_URL, REBATE_*).

# Pinned minor + Debian release; bump deliberately (the tests check the base stays 3.11-slim).
ARG PYTHON_IMAGE=python:3.11.9-slim-bookworm

# --- build: a self-contained virtualenv, copied whole into the runtime stage -------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A compiler only in this stage: every dependency ships x86_64 wheels today, but not every one
# ships them for every platform (arm64 laptops), and a build from sdist must not fail there.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/rebate-engine
WORKDIR /src
# Dependencies in their own layer, rebuilt only when pyproject.toml changes: install the project
# once with empty packages (which pulls every dependency), then drop the stub itself.
COPY pyproject.toml README.md ./
RUN mkdir engine agents schemas \
 && touch engine/__init__.py agents/__init__.py schemas/__init__.py \
 && /opt/rebate-engine/bin/pip install . \
 && /opt/rebate-engine/bin/pip uninstall -y rebate-engine \
 && rm -rf engine agents schemas build
COPY engine ./engine
COPY agents ./agents
COPY schemas ./schemas
# Not editable: the runtime stage gets a plain installed package, no /src. The --help run
# proves the console script and every import resolve inside the image.
RUN /opt/rebate-engine/bin/pip install --no-deps . \
 && /opt/rebate-engine/bin/rebate-engine --help >/dev/null

# --- build-tools: the same virtualenv plus harness/ ---------------------------------------------
FROM build AS build-tools
COPY harness ./harness
RUN /opt/rebate-engine/bin/pip install --no-deps . \
 && /opt/rebate-engine/bin/rebate-engine simulate --help >/dev/null

# --- runtime -----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="rebate-engine" \
      org.opencontainers.image.description="Real-time IB commission, client rebate and JM USD loyalty engine" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/rebate-engine/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed uid/gid so volume permissions are predictable across rebuilds; no login shell.
RUN groupadd --system --gid 10001 rebate \
 && useradd --system --uid 10001 --gid rebate --home-dir /var/lib/rebate-engine \
            --shell /usr/sbin/nologin rebate \
 && install -d -o rebate -g rebate -m 0750 /var/lib/rebate-engine
# Faust keeps its local data directory under the working directory: it must be writable.
WORKDIR /var/lib/rebate-engine
USER rebate:rebate
# /metrics, /healthz, /readyz
EXPOSE 6066
# Exec form: the engine is PID 1's direct child under `init: true` (compose) or PID 1 itself, so
# SIGTERM reaches it and it can stop fetching, finish in-flight work, commit and leave the group.
ENTRYPOINT ["rebate-engine"]
CMD ["worker"]

# --- tools: the runtime with harness/ (`docker build --target tools`) -------------------------
FROM runtime AS tools
COPY --from=build-tools /opt/rebate-engine /opt/rebate-engine

# --- worker (the default target, last): the runtime with engine/, agents/, schemas/ only -------
FROM runtime AS worker
COPY --from=build /opt/rebate-engine /opt/rebate-engine
