package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// sample is one line of `go test -bench` output: one run of one benchmark.
type sample struct {
	Scenario string // the benchmark's name without "Benchmark": "FreeCheckout"
	Impl     string // the impl= part of the name
	Params   string // the other parts of the name, "/"-joined: "par=8"
	CPU      int    // GOMAXPROCS (the -cpu suffix; none means 1)
	Run      int    // 0-based index among the samples of the same benchmark and CPU
	Iters    int64
	Metrics  []metric // in the order printed
}

type metric struct {
	Unit  string
	Value float64
}

// get returns the value of the metric with the given unit.
func (s sample) get(unit string) (float64, bool) {
	for _, m := range s.Metrics {
		if m.Unit == unit {
			return m.Value, true
		}
	}
	return 0, false
}

// parseLine parses one benchmark result line, such as
//
//	BenchmarkFreeCheckout/impl=goflame/par=8-2  123456  25.3 ns/op  0 B/op  0 allocs/op
//
// It reports false for any other line. The -N suffix is taken as the CPU
// count only if N is one of cpus (the testing package adds it when
// GOMAXPROCS is not 1).
func parseLine(line string, cpus []int) (sample, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || len(f)%2 != 0 || !strings.HasPrefix(f[0], "Benchmark") {
		return sample{}, false
	}
	iters, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return sample{}, false
	}
	name, cpu := f[0], 1
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if n, err := strconv.Atoi(name[i+1:]); err == nil && slices.Contains(cpus, n) {
			name, cpu = name[:i], n
		}
	}
	s := sample{CPU: cpu, Iters: iters}
	parts := strings.Split(strings.TrimPrefix(name, "Benchmark"), "/")
	s.Scenario = parts[0]
	var params []string
	for _, p := range parts[1:] {
		if v, ok := strings.CutPrefix(p, "impl="); ok {
			s.Impl = v
		} else {
			params = append(params, p)
		}
	}
	s.Params = strings.Join(params, "/")
	for i := 2; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return sample{}, false
		}
		s.Metrics = append(s.Metrics, metric{Unit: f[i+1], Value: v})
	}
	return s, true
}

// results are every sample of a harness run.
type results struct {
	samples []sample
}

// add appends s, numbering it among the runs of the same benchmark.
func (rs *results) add(s sample) {
	for _, o := range rs.samples {
		if o.Scenario == s.Scenario && o.Impl == s.Impl && o.Params == s.Params && o.CPU == s.CPU {
			s.Run++
		}
	}
	rs.samples = append(rs.samples, s)
}

// median is the median of unit over the runs of one benchmark, or NaN if
// there is none.
func (rs *results) median(scenario, impl, params string, cpu int, unit string) float64 {
	var vs []float64
	for _, s := range rs.samples {
		if s.Scenario == scenario && s.Impl == impl && s.Params == params && s.CPU == cpu {
			if v, ok := s.get(unit); ok {
				vs = append(vs, v)
			}
		}
	}
	return median(vs)
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	vs = slices.Clone(vs)
	slices.Sort(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}

// runs is how many samples each benchmark of scenario has (the smallest).
func (rs *results) runs(scenario string) int {
	count := map[string]int{}
	for _, s := range rs.samples {
		if s.Scenario == scenario {
			count[fmt.Sprint(s.Impl, s.Params, s.CPU)]++
		}
	}
	n := 0
	for _, c := range count {
		if n == 0 || c < n {
			n = c
		}
	}
	return n
}

// distinct lists the values f takes over the samples of scenario, in order of
// first appearance (the benchmarks' own order).
func distinct[T comparable](rs *results, scenario string, f func(sample) T) []T {
	var out []T
	for _, s := range rs.samples {
		if s.Scenario == scenario && !slices.Contains(out, f(s)) {
			out = append(out, f(s))
		}
	}
	return out
}

func (rs *results) impls(scenario string) []string {
	return distinct(rs, scenario, func(s sample) string { return s.Impl })
}

func (rs *results) params(scenario string) []string {
	return distinct(rs, scenario, func(s sample) string { return s.Params })
}

func (rs *results) cpus(scenario string) []int {
	c := distinct(rs, scenario, func(s sample) int { return s.CPU })
	slices.Sort(c)
	return c
}

// writeCSV writes every sample's every metric as one row.
func (rs *results) writeCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"scenario", "impl", "params", "cpu", "run", "iterations", "metric", "value"}); err != nil {
		return err
	}
	for _, s := range rs.samples {
		for _, m := range s.Metrics {
			err := cw.Write([]string{
				s.Scenario, s.Impl, s.Params, strconv.Itoa(s.CPU), strconv.Itoa(s.Run),
				strconv.FormatInt(s.Iters, 10), m.Unit, strconv.FormatFloat(m.Value, 'g', -1, 64),
			})
			if err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}
