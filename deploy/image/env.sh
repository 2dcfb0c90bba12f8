# shellcheck shell=bash
# Sourced by the scripts of deploy/image: podman with all its state in a scratch folder.
#
# Storage, run root, temporary files and configuration live in $PMA_PODMAN_DIR (default: the
# project's per-user cache), never in the repository and never in the machine's own podman
# folders. Each call rewrites the two configuration files (cheap), so that they follow the
# machine's limits; images already stored there are kept.
#
# What it must not do: change the machine's /etc/containers, or start anything.

PMA_CACHE_DIR=${PMA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/predictive-metrics-adapter}
PMA_PODMAN_DIR=${PMA_PODMAN_DIR:-$PMA_CACHE_DIR/podman}

# podman, buildah (the Debian base image), runc (crun fails on hybrid cgroups) and mmdebstrap,
# from Debian's packages, when one is missing.
pma_install_tools() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v buildah >/dev/null || missing+=(buildah)
  command -v runc >/dev/null || missing+=(runc)
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
    echo "missing ${missing[*]}: install them (Debian: apt-get install podman buildah runc mmdebstrap)" >&2
    return 1
  fi
  echo "installing ${missing[*]} (Debian packages)" >&2
  local install=(apt-get install -y --no-install-recommends "${missing[@]}")
  DEBIAN_FRONTEND=noninteractive "${install[@]}" >/dev/null ||
    { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive "${install[@]}" >/dev/null; }
}

# Write storage.conf and containers.conf under $PMA_PODMAN_DIR and point podman at them.
pma_podman_env() {
  local dir=$PMA_PODMAN_DIR
  mkdir -p "$dir/storage" "$dir/run" "$dir/tmp" "$dir/engine"
  cat >"$dir/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$dir/storage"
runroot = "$dir/run"
CONF
  # podman asks for more open files than the machine's hard limit allows unless told; the
  # events go to a file (no journald in these containers).
  local nofile nproc
  nofile=$(ulimit -Hn)
  [ "$nofile" = unlimited ] && nofile=1048576
  nproc=$(cat /proc/sys/kernel/pid_max)
  cat >"$dir/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$dir/engine/events.log"
tmp_dir = "$dir/engine"
CONF
  export CONTAINERS_STORAGE_CONF=$dir/storage.conf
  export CONTAINERS_CONF=$dir/containers.conf
  export TMPDIR=$dir/tmp
}
