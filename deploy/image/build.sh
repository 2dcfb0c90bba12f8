#!/usr/bin/env bash
# Build the adapter's image with podman:  bash deploy/image/build.sh [serve|train]
#
#   serve (default)  the serving image, without torch: IMAGE (predictive-metrics-adapter:<version>)
#   train            the same plus torch, for `python -m forecaster train`: IMAGE-train
#
# The base image is PYTHON_IMAGE (python:3.11-slim-bookworm): taken from local storage, else
# pulled, else - for the default only, on machines that reach no container registry - a
# stand-in with the same Debian release and Python is assembled from Debian packages
# (mmdebstrap) and stored as localhost/python:3.11-slim-bookworm, once per machine.
#
# torch for the train target comes from TORCH_INDEX_URL; without it, the CPU wheel that this
# machine's pip finds is served to the build from a loopback index (stopped on exit).
#
# Incremental: the base image is reused, and podman's layer cache keeps the dependency layer
# until pyproject.toml or constraints.txt change. All podman state stays in PMA_PODMAN_DIR
# (see env.sh). The host's CA bundle is mounted for the build steps only (pip behind a
# TLS-re-signing proxy) and never lands in the image.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/image/env.sh
. deploy/image/env.sh

TARGET=${1:-serve}
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)
IMAGE=${IMAGE:-predictive-metrics-adapter:$VERSION}
PYTHON_IMAGE=${PYTHON_IMAGE:-python:3.11-slim-bookworm}
DEFAULT_BASE=python:3.11-slim-bookworm
STAND_IN=localhost/$DEFAULT_BASE
DEBIAN_SOURCES=${DEBIAN_SOURCES:-/etc/apt/sources.list.d/debian.sources}
HOST_CA=${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}
TORCH_VERSION=2.13.0
# pip for `pip download`: the project's virtualenv if made, else the machine's.
HOST_PYTHON=python3
[ -x .venv/bin/python ] && HOST_PYTHON=.venv/bin/python

log() { echo "image: $*" >&2; }
seconds() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(seconds)" 'BEGIN { printf "%.0f s", b - a }'; }

# A Debian bookworm root with Python 3.11 and venv, as python:3.11-slim-bookworm provides:
# minbase, no man pages, documentation or translations, and /usr merged by mmdebstrap's hook
# (the usrmerge package would bring perl, 50 MB).
build_stand_in() {
  local started tar container
  started=$(seconds)
  log "no registry answered for $DEFAULT_BASE: assembling $STAND_IN from Debian packages"
  [ -r "$DEBIAN_SOURCES" ] || { log "no apt sources at $DEBIAN_SOURCES (set DEBIAN_SOURCES)"; exit 1; }
  tar=$TMPDIR/base-$$.tar
  mmdebstrap --quiet --variant=minbase --format=tar \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --include=python3.11,python3-venv,python-is-python3,ca-certificates,netbase,tzdata \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    bookworm "$tar" "$DEBIAN_SOURCES"
  container=$(buildah from scratch)
  buildah add --quiet "$container" "$tar" / >/dev/null
  buildah config \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 \
    --cmd python3 \
    --label org.opencontainers.image.description="Debian bookworm with Python 3.11 (mmdebstrap), standing in for $DEFAULT_BASE" \
    "$container"
  buildah commit --quiet --rm "$container" "$STAND_IN" >/dev/null
  rm -f "$tar"
  log "built $STAND_IN in $(elapsed "$started")"
}

# The name of a local base image to build on (prints it).
base_image() {
  if podman image exists "$PYTHON_IMAGE"; then
    echo "$PYTHON_IMAGE"
  elif [ "$PYTHON_IMAGE" = "$DEFAULT_BASE" ] && podman image exists "$STAND_IN"; then
    echo "$STAND_IN"
  elif podman pull --quiet "$PYTHON_IMAGE" >/dev/null 2>"$TMPDIR/pull.err"; then
    echo "$PYTHON_IMAGE"
  elif [ "$PYTHON_IMAGE" = "$DEFAULT_BASE" ]; then
    build_stand_in
    echo "$STAND_IN"
  else
    log "cannot pull $PYTHON_IMAGE: $(tail -1 "$TMPDIR/pull.err")"
    exit 1
  fi
}

# torch and its dependencies for CPython 3.11 on x86_64, as a PEP 503 index (one folder per
# normalised project name) under the cache; prints its folder.
torch_index() {
  local index=$PMA_CACHE_DIR/torch-index wheels
  wheels=$index.wheels
  if [ ! -d "$index/torch" ]; then
    log "downloading torch $TORCH_VERSION and its dependencies (the wheels this machine's pip finds)"
    rm -rf "$index" "$wheels"
    "$HOST_PYTHON" -m pip download --quiet --dest "$wheels" -c constraints.txt \
      --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
      --platform manylinux_2_28_x86_64 "torch==$TORCH_VERSION" >&2
    local wheel name
    for wheel in "$wheels"/*.whl; do
      name=$(basename "$wheel" | cut -d- -f1 | tr 'A-Z_.' 'a-z--')
      mkdir -p "$index/$name"
      mv "$wheel" "$index/$name/"
    done
    rmdir "$wheels"
  fi
  echo "$index"
}

serve_index() {
  local folder=$1 port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  python3 -m http.server --bind 127.0.0.1 --directory "$folder" "$port" >"$TMPDIR/index.log" 2>&1 &
  INDEX_PID=$!
  trap 'kill "$INDEX_PID" 2>/dev/null || true' EXIT
  for _ in $(seq 50); do
    python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/torch/')" 2>/dev/null && break
    sleep 0.1
  done
  TORCH_INDEX_URL=http://127.0.0.1:$port/
}

pma_install_tools
pma_podman_env

started=$(seconds)
base=$(base_image)
args=(--network=host --pull=never --build-arg "PYTHON_IMAGE=$base")
[ -r "$HOST_CA" ] && args+=(--volume "$HOST_CA:/etc/ssl/certs/ca-certificates.crt:ro")
case $TARGET in
  serve) tag=$IMAGE ;;
  train)
    tag=$IMAGE-train
    [ -n "${TORCH_INDEX_URL:-}" ] || serve_index "$(torch_index)"
    args+=(--target train --build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
    ;;
  *) log "unknown target $TARGET (serve or train)"; exit 2 ;;
esac
log "building $tag on $base"
podman build "${args[@]}" --tag "$tag" --file Dockerfile .
size=$(podman image inspect --format '{{.Size}}' "$tag")
log "$tag: $((size / 1000000)) MB uncompressed, built in $(elapsed "$started")"
