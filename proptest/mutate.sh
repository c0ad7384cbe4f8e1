#!/usr/bin/env bash
# Mutation check for the property suite: applies one deliberate bug at a time
# to a throw-away copy of the module (never to this work tree), runs the
# property tests there, and reports whether the suite caught the bug.
#
#   proptest/mutate.sh                 # every mutation
#   proptest/mutate.sh lifo mc-le      # only these
#   RAPID_CHECKS=500 proptest/mutate.sh
#
# The unmutated copy runs first and must pass, so that each mutation is
# judged on its own.
# Logs (with rapid's shrunk history) go to $OUT (default /tmp/proptest-mutants).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/proptest-mutants}
export RAPID_CHECKS=${RAPID_CHECKS:-300}
tests='TestPoolMatchesModel|TestPoolInvariantsUnderConcurrency|TestQueueMatchesSliceModel'
pkgs='./proptest ./flame/internal/waitq'

# Each mutation: name, file, perl substitution (applied with perl -0pi).
mutations=(
  "ties-to-lowest-id|flame/checkout.go|s/placement\.(Caller|Start)\(n\)/0*placement.\$1(n)/g"
  "lifo|flame/internal/waitq/waitq.go|s/for e := q\.head; e != nil; e = q\.head \{/for e := q.tail; e != nil; e = q.tail {/"
  "mc-le|flame/checkout.go|s/if l := wordLoad\(w\); l < bl \{/if l := wordLoad(w); l <= bl {/"
  "no-min-replacement-after-crash|flame/watch.go|s/p\.sc\.Removed\(r, ErrRunnerDown, true\)/p.sc.Removed(r, ErrRunnerDown, false)/"
  "crash-not-reported|flame/watch.go|s/\n\s*p\.sc\.Removed\(r, ErrRunnerDown, true\)//"
  "retry-always-scheduled|flame/internal/scaler/scaler.go|s/if !s\.retryPending && s\.unmet\(\) \{/if !s.retryPending {/"
  "retry-boots-without-demand|flame/internal/scaler/scaler.go|s/(func \(s \*Scaler\) retryFired\(\) \{\n\s*s\.mu\.Lock\(\)\n\s*s\.retryPending = false\n)/\$1\tif s.total() < s.max {\n\t\ts.startBoot(false)\n\t}\n/"
  "idle-kill-without-claim|flame/internal/scaler/scaler.go|s/if gen, ok := s\.idleCandidate\(info\); ok && agree && info\.r\.ClaimIdle\(gen\) \{/if agree {\n\t\tinfo.r.Kill()/"
  "idle-claim-not-atomic|flame/runner.go|s/(func \(r \*runner\) ClaimIdle\(gen uint64\) bool \{\n\s*w := [^\n]*\n)\s*return r\.word\.CompareAndSwap\(w, withState\(w, stDown\)\)/\$1\tif r.word.Load() != w {\n\t\treturn false\n\t}\n\truntime.Gosched()\n\tr.word.Store(withState(w, stDown))\n\treturn true/"
)

want=("$@")
mkdir -p "$out"

# copy makes a fresh copy of the module in $1.
copy() {
  rm -rf "$1"
  mkdir -p "$1"
  (cd "$root" && tar --exclude=./.git --exclude='./proptest/testdata' --exclude='./flame/internal/waitq/testdata' -cf - .) | (cd "$1" && tar -xf -)
}

# run runs the suite in $1, logging to $2; it returns the test's status.
run() {
  (cd "$1" && go test -count=1 $pkgs -run "$tests") >"$2" 2>&1
}

base=/tmp/proptest-mut-base
copy "$base"
printf '%-34s ' "baseline (no mutation)"
if run "$base" "$out/baseline.log"; then
  echo "passes"
else
  echo "FAILS: see $out/baseline.log; fix that first"
  exit 1
fi

caught=0
total=0
for m in "${mutations[@]}"; do
  IFS='|' read -r name file subst <<<"$m"
  if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " =~ " $name " ]]; then
    continue
  fi
  total=$((total + 1))
  dir=/tmp/proptest-mut-$name
  copy "$dir"
  perl -0pi -e "$subst" "$dir/$file"
  if cmp -s "$root/$file" "$dir/$file"; then
    printf '%-34s did not apply (the code changed?)\n' "$name"
    continue
  fi
  if grep -q 'runtime.Gosched' "$dir/$file" && ! grep -q '"runtime"' "$dir/$file"; then
    perl -0pi -e 's/import \(\n/import (\n\t"runtime"\n/' "$dir/$file"
  fi
  if ! (cd "$dir" && go build ./... && go vet ./flame/... >/dev/null) >"$out/$name.log" 2>&1; then
    printf '%-34s does not build: see %s\n' "$name" "$out/$name.log"
    continue
  fi
  printf '%-34s ' "$name"
  if run "$dir" "$out/$name.log"; then
    echo "SURVIVED (the suite did not notice)"
  else
    caught=$((caught + 1))
    which=$(grep -o -- '--- FAIL: Test[A-Za-z]*' "$out/$name.log" | sed 's/--- FAIL: //' | sort -u | tr '\n' ' ')
    echo "caught by ${which}(log: $out/$name.log)"
  fi
  rm -rf "$dir"
done
echo "caught $caught of $total mutations"
