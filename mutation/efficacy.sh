#!/usr/bin/env bash
# Mutation efficacy per package, with gremlins v0.6.0 (installed through
# the Go module proxy if missing): for each package, gremlins plants one
# bug at a time (a flipped condition, an off-by-one, a negated number...),
# runs the tests, and counts the bugs the tests caught.
#
#   mutation/efficacy.sh                         # every library package
#   mutation/efficacy.sh flame/internal/waitq    # some (paths from the repository root)
#   ONLY="checkout.go release.go" mutation/efficacy.sh flame
#                                                # some files of one package
#   MODE=pkg ONLY="serve.go" mutation/efficacy.sh flame
#                                                # its own tests only (faster,
#                                                # for code no other package tests)
#
# Efficacy is killed ÷ (killed + lived); mutator coverage is (killed +
# lived) ÷ all mutants (the rest no test even runs). A timed-out mutant
# counts as killed: the tests noticed (a hang). Packages tested from
# elsewhere run in integration mode (-i: the module's whole test suite per
# mutant). Mutants argued equivalent or unreachable are listed, with why,
# in mutation/EQUIVALENT.md. Logs go to $OUT (default /tmp/goflame-mutation).
# Needs what the tests need (root and ip(8) for the remote tests). The flame
# package takes hours on two cores: one test run per mutant. The timeout is
# ten times the unmutated run's: at three, compiling the mutant alone
# outlasted it for the small packages and hid whether the tests caught it.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/goflame-mutation}
gremlins=${GREMLINS:-$(go env GOPATH)/bin/gremlins}
if [ ! -x "$gremlins" ]; then
  go install github.com/go-gremlins/gremlins/cmd/gremlins@v0.6.0 || exit 1
fi
mkdir -p "$out"
# gremlins derives each mutant's timeout from its coverage run: a run that
# go test serves from its cache would make every timeout a fraction of a
# real run, and mutants would "time out" instead of being judged.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-count=1"

# package path (from the repository root) and mode: pkg (its own tests) or
# int (the module's whole suite: the package is tested through another one).
all=(
  "flame/internal/waitq pkg"
  "flame/internal/clock pkg"
  "flame/internal/scaler pkg"
  "flame/internal/wire pkg"
  "flame/internal/link pkg"
  "flame/internal/session pkg"
  "internal/placement pkg"
  "flame/internal/tcplink int"
  "flame int"
  "kube pkg"
)

want=("$@")
printf '%-24s %7s %7s %7s %9s %11s %9s %9s\n' package killed lived "t/out" "not cov" efficacy coverage time
for entry in "${all[@]}"; do
  read -r pkg mode <<<"$entry"
  mode=${MODE:-$mode}
  if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " =~ " $pkg " ]]; then
    continue
  fi
  log="$out/$(echo "$pkg" | tr / _).log"
  flags=(--workers 1 --timeout-coefficient 10)
  [ "$mode" = int ] && flags+=(-i --coverpkg ./...)
  if [ -n "${ONLY:-}" ]; then
    # Mutate only the named files: every other file of the package, and
    # its sub-packages, is excluded (gremlins matches paths by regexp).
    flags+=(-E "/")
    for f in "$root/$pkg"/*.go; do
      f=$(basename "$f")
      [[ $f == *_test.go || " $ONLY " == *" $f "* ]] || flags+=(-E "^${f//./\\.}\$")
    done
  fi
  dir=$root work=auto
  if [ "$pkg" = kube ]; then
    # The Kubernetes module. gremlins copies a module into a temporary
    # directory, where kube's go.mod replacements (../) would point at
    # nothing: it mutates a copy whose replacements point at this checkout.
    # The example program is not library code (it needs a real cluster's
    # deployment, and no test runs it).
    dir=$out/kube-module pkg=. work=off
    rm -rf "$dir" && cp -r "$root/kube" "$dir"
    (cd "$dir" && go mod edit -replace "github.com/goflame/goflame=$root" \
      -replace "github.com/goflame/goflame/internal/kubetest=$root/internal/kubetest") || exit 1
    flags+=(-E '^examples/')
  fi
  start=$(date +%s)
  (cd "$dir" && GOWORK=$work "$gremlins" unleash "${flags[@]}" "./$pkg") >"$log" 2>&1
  # A mutant that hung its tests can leave their binary running after
  # gremlins gave up on it (and the runner processes it started).
  pkill -9 -f "${TMPDIR:-/tmp}/gremlins-" 2>/dev/null
  secs=$(($(date +%s) - start))
  k=$(sed -n 's/^Killed: \([0-9]*\), Lived: \([0-9]*\), Not covered: \([0-9]*\).*/\1 \2 \3/p' "$log")
  t=$(sed -n 's/^Timed out: \([0-9]*\),.*/\1/p' "$log")
  e=$(sed -n 's/^Test efficacy: \(.*\)$/\1/p' "$log")
  c=$(sed -n 's/^Mutator coverage: \(.*\)$/\1/p' "$log")
  read -r killed lived notcov <<<"${k:-? ? ?}"
  [ "$pkg" = . ] && pkg=kube
  printf '%-24s %7s %7s %7s %9s %11s %9s %8ss\n' "$pkg" "$killed" "$lived" "${t:-?}" "$notcov" "${e:-?}" "${c:-?}" "$secs"
done
echo "logs: $out (the LIVED and NOT COVERED lines name each survivor)"
