// Package measure is what the bench programs share: latency percentiles,
// sequential timing, and the name of the CPU the figures come from.
package measure

import (
	"os"
	"slices"
	"strings"
	"time"
)

// Pct is the p-th percentile of sorted (nearest rank).
func Pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

// Sequential calls call warmup times untimed, then n times timed, one
// after the other, and returns the n durations sorted.
func Sequential(n, warmup int, call func(i int) error) ([]time.Duration, error) {
	for i := range warmup {
		if err := call(i); err != nil {
			return nil, err
		}
	}
	ts := make([]time.Duration, n)
	for i := range ts {
		start := time.Now()
		if err := call(i); err != nil {
			return nil, err
		}
		ts[i] = time.Since(start)
	}
	slices.Sort(ts)
	return ts, nil
}

// CPUModel names this machine's CPU (Linux /proc/cpuinfo), for figures
// quoted with it.
func CPUModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
