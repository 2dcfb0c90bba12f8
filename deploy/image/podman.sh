#!/usr/bin/env bash
# podman with the project's scratch storage and configuration (see env.sh), where `make image`
# stores the images:
#   bash deploy/image/podman.sh images
#   bash deploy/image/podman.sh run --rm --read-only --tmpfs /tmp predictive-metrics-adapter:0.1.0 serve --help
set -euo pipefail
# shellcheck source=deploy/image/env.sh
. "$(dirname "$0")/env.sh"
if ! command -v podman >/dev/null; then
  echo "podman is not installed: \`make image\` installs it (Debian packages)" >&2
  exit 127
fi
pma_podman_env
exec podman "$@"
