#!/usr/bin/env bash
# build-control-plane.sh [CACHE_DIR]
#
# Builds etcd, kube-apiserver, kube-controller-manager and kube-scheduler from
# the Go module proxy (no GitHub, no dl.k8s.io) into CACHE_DIR, default
#   ${XDG_CACHE_HOME:-$HOME/.cache}/goflame-kube/<K8S_VERSION>-etcd<ETCD_VERSION>
# Idempotent: when the four binaries and a matching stamp file are there it
# exits 0 at once. Prints the directory holding the binaries as its last line
# of stdout (everything else goes to stderr), so callers can do
#   KUBE_BIN=$(./build-control-plane.sh | tail -n1)
#
# Environment knobs:
#   K8S_VERSION   k8s.io/kubernetes version            (default v1.37.2)
#   ETCD_VERSION  go.etcd.io/etcd/server/v3 version    (default v3.6.17)
#   GOMODCACHE / GOCACHE are honoured as usual (the Go build cache makes a
#   rebuild after a deleted cache dir take ~30 s instead of ~7.5 min cold).
#
# Why a wrapper module: k8s.io/kubernetes's go.mod replaces every staging
# module (k8s.io/api, k8s.io/client-go, ...) with ./staging/src/..., which a
# module download does not contain, so `go install k8s.io/kubernetes/cmd/...@v`
# refuses. A throwaway module that requires k8s.io/kubernetes and replaces each
# staging module with its published v0.Y.Z tag builds fine. etcd's server
# module has relative replace directives too; a wrapper module that merely
# requires it works because replace directives of dependencies are ignored.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.17}
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler)
STAMP_CONTENT="k8s.io/kubernetes ${K8S_VERSION}
go.etcd.io/etcd/server/v3 ${ETCD_VERSION}
flags CGO_ENABLED=0 -trimpath -ldflags=-s -w"

CACHE_DIR=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/goflame-kube/${K8S_VERSION}-etcd${ETCD_VERSION}}
STAMP="$CACHE_DIR/.stamp"

log() { printf '[build-control-plane] %s\n' "$*" >&2; }
die() { printf '[build-control-plane] ERROR: %s\n' "$*" >&2; exit 1; }

complete() {
  [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$STAMP_CONTENT" ]] || return 1
  local b
  for b in "${BINARIES[@]}"; do [[ -x "$CACHE_DIR/$b" ]] || return 1; done
}

# Fast path: nothing to do.
if complete; then
  log "cached: ${BINARIES[*]} ($K8S_VERSION, etcd $ETCD_VERSION) in $CACHE_DIR"
  echo "$CACHE_DIR"
  exit 0
fi

T_START=$(date +%s.%N)
step_t0=$T_START
step() {  # step NAME: prints the time taken since the previous step
  local now; now=$(date +%s.%N)
  log "$(printf '%-44s %7.1fs  (total %6.1fs)' "$1" "$(echo "$now - $step_t0" | bc)" "$(echo "$now - $T_START" | bc)")"
  step_t0=$now
}
command -v bc >/dev/null || step() { log "done: $1 (after $(( $(date +%s) - ${T_START%.*} ))s)"; }

command -v go >/dev/null || die "go not found in PATH (need Go >= the go line of k8s.io/kubernetes ${K8S_VERSION})"

mkdir -p "$CACHE_DIR" || die "cannot create $CACHE_DIR"
CACHE_DIR=$(cd "$CACHE_DIR" && pwd -P)
STAMP="$CACHE_DIR/.stamp"
if command -v git >/dev/null && top=$(git -C "$CACHE_DIR" rev-parse --show-toplevel 2>/dev/null); then
  die "cache dir $CACHE_DIR is inside the git repository $top; put it outside any repository"
fi

# One build at a time per cache dir (parallel test packages may all call us).
if command -v flock >/dev/null; then
  exec 9>"$CACHE_DIR/.lock"
  if ! flock -n 9; then
    log "another build holds $CACHE_DIR/.lock; waiting"
    flock 9
  fi
  if complete; then
    log "built meanwhile by another process: $CACHE_DIR"
    echo "$CACHE_DIR"; exit 0
  fi
fi
rm -f "$STAMP"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/goflame-kube-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

export CGO_ENABLED=0 GOWORK=off GOFLAGS="-mod=mod -buildvcs=false"
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
MODCACHE=$(go env GOMODCACHE)
dl_size() { du -sk "$MODCACHE/cache/download" 2>/dev/null | cut -f1 || echo 0; }
DL_BEFORE=$(dl_size)
log "go: $(go env GOVERSION), GOMODCACHE=$MODCACHE, GOCACHE=$(go env GOCACHE)"
log "building k8s.io/kubernetes $K8S_VERSION + etcd $ETCD_VERSION into $CACHE_DIR"

# gomod_header FILE: copies the `go` and `godebug` lines of a dependency's
# go.mod, so the binaries get the GODEBUG defaults their upstream build has.
gomod_header() {
  awk '/^go [0-9]/ {print} /^godebug[ (]/ {g=1} g {print} g && (/\)/ || !/\(/) {g=0}' "$1"
}

########## resolve both modules first, so a bad version fails in seconds ##########
# etcd
mkdir -p "$WORK/etcd" "$WORK/out"
ETCD_JSON=$(cd "$WORK/etcd" && go mod download -json "go.etcd.io/etcd/server/v3@$ETCD_VERSION") \
  || die "go.etcd.io/etcd/server/v3@$ETCD_VERSION cannot be downloaded from the module proxy: $ETCD_JSON"
ETCD_GOMOD=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p' <<<"$ETCD_JSON")
{
  echo "module goflame.local/etcd-wrapper"
  gomod_header "$ETCD_GOMOD"
  echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
} >"$WORK/etcd/go.mod"
step "etcd: go mod download + write wrapper"

# kubernetes
mkdir -p "$WORK/kube"
K8S_JSON=$(cd "$WORK/kube" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION") \
  || die "k8s.io/kubernetes@$K8S_VERSION cannot be downloaded from the module proxy (go list -m -versions k8s.io/kubernetes shows what is served): $K8S_JSON"
K8S_GOMOD=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p' <<<"$K8S_JSON")
[[ -f "$K8S_GOMOD" ]] || die "no go.mod for k8s.io/kubernetes@$K8S_VERSION in the module cache"
step "kubernetes: go mod download k8s.io/kubernetes"

# Staging modules: every `k8s.io/X => ./staging/...` replace, block or single-line form.
mapfile -t STAGING < <(awk '
  $1=="replace" && $3=="=>" && $4 ~ /^\.\/staging\// {print $2; next}
  $2=="=>" && $3 ~ /^\.\/staging\// {print $1}' "$K8S_GOMOD" | sort -u)
((${#STAGING[@]} > 0)) || die "found no ./staging replace directives in $K8S_GOMOD"
# Those that k8s.io/kubernetes actually requires (others are only replaced).
REQUIRED=" $(awk '/^require[ (]/ {r=1} r && $1 ~ /^k8s\.io\// {print $1} r && /^\)/ {r=0}' "$K8S_GOMOD" | tr '\n' ' ') "

STAGING_VERSION="v0.${K8S_VERSION#v1.}"        # v1.37.2 -> v0.37.2
MINOR=$(cut -d. -f1,2 <<<"$STAGING_VERSION")   # v0.37
PATCH=$(cut -d. -f3 <<<"$STAGING_VERSION"); PATCH=${PATCH%%-*}

# One go list call asks the proxy about all of them at once.
queries=(); for m in "${STAGING[@]}"; do queries+=("$m@$STAGING_VERSION"); done
declare -A RESOLVED=()
while read -r path ver err; do
  [[ -z "$err" ]] && RESOLVED[$path]=$ver
done < <(cd "$WORK/kube" && go list -m -e -f '{{.Path}} {{.Version}}{{if .Error}} ERR{{end}}' "${queries[@]}" 2>/dev/null)

REPLACES=(); STUBS=()
for m in "${STAGING[@]}"; do
  v=${RESOLVED[$m]:-}
  if [[ -z "$v" ]]; then
    # Nearest patch of the same minor that the proxy lists.
    v=$(cd "$WORK/kube" && go list -m -versions "$m" 2>/dev/null | tr ' ' '\n' \
        | grep -E "^${MINOR//./\\.}\.[0-9]+$" \
        | awk -F. -v p="$PATCH" '{d=$3-p; if (d<0) d=-d; print d, $3, $0}' | sort -n -k1,1 -k2,2 | head -n1 | cut -d' ' -f3) || true
    if [[ -n "$v" ]]; then
      log "note: $m $STAGING_VERSION not served; pinned to neighbouring $v"
    elif [[ "$REQUIRED" != *" $m "* ]]; then
      log "note: $m not served and not required by k8s.io/kubernetes; leaving it out"
      continue
    else
      # Required but unpublished (e.g. sample-* modules): an empty local stub
      # keeps the module graph complete; if a built package needs it, go build
      # fails below and says which package.
      log "warning: $m has no $MINOR.x version on the proxy; using an empty local stub"
      mkdir -p "$WORK/kube/stub/$m"
      printf 'module %s\n' "$m" >"$WORK/kube/stub/$m/go.mod"
      REPLACES+=("$m => ./stub/$m"); STUBS+=("$m")
      continue
    fi
  fi
  REPLACES+=("$m => $m $v")
done
{
  echo "module goflame.local/kube-wrapper"
  gomod_header "$K8S_GOMOD"
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo "replace ("
  printf '\t%s\n' "${REPLACES[@]}"
  echo ")"
} >"$WORK/kube/go.mod"
step "kubernetes: resolve ${#STAGING[@]} staging modules"

########## build ##########
(cd "$WORK/etcd" && go build -trimpath -ldflags="-s -w" -o "$WORK/out/etcd" go.etcd.io/etcd/server/v3) \
  || die "building etcd $ETCD_VERSION failed (see the go output above)"
step "etcd: go build"

MAJOR=$(cut -d. -f1 <<<"${K8S_VERSION#v}"); KMINOR=$(cut -d. -f2 <<<"$K8S_VERSION")
LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$MAJOR -X $pkg.gitMinor=$KMINOR"
  LDFLAGS+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
done

for b in kube-apiserver kube-controller-manager kube-scheduler; do
  (cd "$WORK/kube" && go build -trimpath -ldflags="$LDFLAGS" -o "$WORK/out/$b" "k8s.io/kubernetes/cmd/$b") \
    || die "building $b from k8s.io/kubernetes $K8S_VERSION failed (see the go output above; stubbed modules: ${STUBS[*]:-none}). Try another K8S_VERSION from: go list -m -versions k8s.io/kubernetes"
  step "kubernetes: go build $b"
done

for b in "${BINARIES[@]}"; do
  "$WORK/out/$b" --version >/dev/null 2>&1 || die "$b was built but does not run (--version failed)"
  mv -f "$WORK/out/$b" "$CACHE_DIR/$b"
done
printf '%s\n' "$STAMP_CONTENT" >"$STAMP"
step "install into cache dir"

DL_AFTER=$(dl_size)
log "module downloads during this run: $(( (DL_AFTER - DL_BEFORE) / 1024 )) MiB"
for b in "${BINARIES[@]}"; do
  log "$(printf '%-24s %4d MiB  %s' "$b" $(( $(stat -c %s "$CACHE_DIR/$b") / 1048576 )) "$("$CACHE_DIR/$b" --version 2>&1 | head -n1)")"
done
echo "$CACHE_DIR"
