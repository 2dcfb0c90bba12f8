# The adapter image: Python 3.11 slim, CPU-only torch, the pretrained model inside, non-root.
#
#   docker build -t predictive-metrics-adapter:0.1.0 .
#   docker build --build-arg TORCH_INDEX_URL=<a PyTorch CPU wheel index> -t ... .
#
# torch is pinned to 2.13.0. Without TORCH_INDEX_URL pip takes the default build from the
# package index, which on x86_64 bundles CUDA libraries (several GB, unused here); point
# TORCH_INDEX_URL at an index of the CPU-only wheels (the PyTorch project publishes one) for a
# small image.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/adapter
ENV PATH=/opt/adapter/bin:$PATH
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY adapter ./adapter
COPY apiservice ./apiservice
COPY kedascaler ./kedascaler
COPY certs ./certs
COPY forecaster ./forecaster
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" "torch==2.13.0"; \
    fi \
 && pip install -c constraints.txt ".[keda]" \
 && python -c "import forecaster; forecaster.load_forecaster()"

FROM ${PYTHON_IMAGE}
COPY --from=build /opt/adapter /opt/adapter
ENV PATH=/opt/adapter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric user, so that runAsNonRoot can verify it; the root filesystem can be read-only
# (the Deployment mounts an emptyDir at /tmp).
USER 10001:10001
EXPOSE 6443
ENTRYPOINT ["predictive-metrics-adapter"]
CMD ["serve", "--help"]
