# Every target sets up what it needs: a fresh clone needs only `make run` or `make test`.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 6443
DATA   ?= ../shared/data
IMAGE  ?= predictive-metrics-adapter:$(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
PYTHON_IMAGE ?= python:3.11-slim-bookworm

.PHONY: run test verify pytest e2e control-plane image image-train format proto train bench-serve bench-forecast bench-refresh bench-keda bench-connections bench-soak bench-scaling bench-ceiling clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,dev,bench,plot,keda,train]'
	touch $@

## run: serve the bundled demo values on https://127.0.0.1:$(PORT) and print kubectl commands
run: $(STAMP)
	$(BIN)/predictive-metrics-adapter local --secure-port $(PORT)

## test: static checks, then the whole test suite
test: verify pytest

verify: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

pytest: $(STAMP) control-plane
	$(BIN)/pytest

## e2e: only the end-to-end tests (kube-apiserver, HPA controller, Prometheus), with their output
e2e: $(STAMP) control-plane
	$(BIN)/pytest tests/e2e -rP

## control-plane: etcd and kube-apiserver v1.20.2 for tests/e2e (built once per machine, ~5 min)
control-plane:
	@bash tests/e2e/build_control_plane.sh >/dev/null

## image: the serving image (no torch) with podman, as $(IMAGE); the base image is built from
## Debian packages when no registry serves $(PYTHON_IMAGE) (first time ~2 min, then cached)
image:
	IMAGE=$(IMAGE) PYTHON_IMAGE=$(PYTHON_IMAGE) bash deploy/image/build.sh serve

## image-train: the same plus torch (the train extra), as $(IMAGE)-train
image-train:
	IMAGE=$(IMAGE) PYTHON_IMAGE=$(PYTHON_IMAGE) bash deploy/image/build.sh train

## format: apply ruff's fixes and formatting
format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## proto: regenerate the gRPC code of KEDA's external scaler from its .proto
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. --pyi_out=. \
		kedascaler/externalscaler/externalscaler.proto

## train: retrain the shipped model from the traces in $(DATA) (seeded; about a minute)
train: $(STAMP)
	$(BIN)/python -m forecaster train --data $(DATA) --out forecaster/default

## bench-forecast: accuracy vs the anchors on $(DATA), inference and loading costs
bench-forecast: $(STAMP)
	$(BIN)/python -m bench.forecast --data $(DATA)

## bench-ceiling: what the accuracy targets ask: scores of the candidates alone and of forecasts that read the future
bench-ceiling: $(STAMP)
	$(BIN)/python -m bench.ceiling --data $(DATA)

## bench-scaling: the scaling protocol (shared/reference/scaling-replay.md) on $(DATA): shortfall and pod-hours per policy, and the frontier
bench-scaling: $(STAMP)
	$(BIN)/python -m bench.scaling --data $(DATA)

## bench-refresh: refresh cycles against a real Prometheus for 1, 100 and 1,000 targets
bench-refresh: $(STAMP)
	$(BIN)/python -m bench.refresh --targets 1,100,1000

## bench-keda: KEDA external scaler GetMetrics calls/s and latency over TLS
bench-keda: $(STAMP)
	$(BIN)/python -m bench.keda

## bench-connections: server RSS while thousands of idle TLS connections are held, and after they close
bench-connections: $(STAMP)
	$(BIN)/python -m bench.connections

## bench-soak: twelve minutes of mixed load (HPA reads, token floods, bad requests, reloads): p99 and RSS drift
bench-soak: $(STAMP)
	$(BIN)/python -m bench.soak

## bench-serve: requests/s and latency of the metric GET over TLS (needs apache2-utils' ab)
bench-serve: $(STAMP)
	@command -v ab >/dev/null || { echo "installing apache2-utils for ab"; apt-get install -y --no-install-recommends apache2-utils >/dev/null; }
	$(BIN)/python -m bench.serve

clean:
	rm -rf $(VENV) .local .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache
