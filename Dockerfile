# The adapter's images: Python 3.11 slim, the pretrained model inside, non-root, read-only root.
#
#   make image              the serving image (default target), with podman: deploy/image/build.sh
#   docker build -t predictive-metrics-adapter:0.1.0 .
#   docker build --target train --build-arg TORCH_INDEX_URL=<a PyTorch CPU wheel index> \
#     -t predictive-metrics-adapter:0.1.0-train .
#
# The serving image holds no torch: the `keda` extra and the core dependencies only. The
# `train` target adds the `train` extra (torch 2.13.0, for `python -m forecaster train`);
# without TORCH_INDEX_URL pip takes torch's default build from the package index, which on
# x86_64 bundles CUDA libraries (several GB, unused here).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv in /opt/adapter ----------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
# PIP_CERT: the system bundle, so that a build-time mount of the host's bundle is honoured.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PATH=/opt/adapter/bin:$PATH
RUN python -m venv /opt/adapter
WORKDIR /src
COPY pyproject.toml constraints.txt ./
# The serving dependencies in a layer of their own: a code change does not reinstall them.
RUN python -c 'import tomllib; project = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
print(*project["dependencies"], *project["optional-dependencies"]["keda"], sep="\n")' \
    >requirements.txt \
 && pip install -c constraints.txt -r requirements.txt
COPY README.md ./
COPY adapter ./adapter
COPY apiservice ./apiservice
COPY kedascaler ./kedascaler
COPY certs ./certs
COPY forecaster ./forecaster
RUN pip install --no-deps .
COPY deploy/image/trim.sh /usr/local/bin/trim-venv

# --- the trees the images copy: trimmed in their own stage, so nothing deleted is shipped ---
FROM build AS serve-tree
WORKDIR /
RUN trim-venv /opt/adapter \
 && python -c 'import apiservice.server, kedascaler.scaler, forecaster; forecaster.load_forecaster()'

FROM build AS train-tree
ARG TORCH_INDEX_URL=""
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" -c constraints.txt "torch==2.13.0"; \
    fi \
 && pip install -c constraints.txt ".[keda,train]" \
 && trim-venv /opt/adapter \
 && cd / && python -c 'import torch, forecaster; forecaster.load_forecaster()'

# --- what both images share -----------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/adapter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric user, so that runAsNonRoot can verify it; the root filesystem can be read-only
# (the Deployment mounts an emptyDir at /tmp).
USER 10001:10001
EXPOSE 6443
ENTRYPOINT ["predictive-metrics-adapter"]
CMD ["serve", "--help"]

FROM runtime AS train
COPY --from=train-tree /opt/adapter /opt/adapter

# --- the serving image (the default target) ---------------------------------------------------
FROM runtime AS serve
COPY --from=serve-tree /opt/adapter /opt/adapter
