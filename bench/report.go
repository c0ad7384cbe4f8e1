package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// The tables and plots of each scenario, and the targets. Every number is a
// median over the runs of one benchmark; ratios are of medians measured in
// the same harness run.

const (
	self     = "goflame"
	actor    = "actor"
	semImp   = "semaphore"
	mutexImp = "mutex"
)

func newTab(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
}

// num formats a median, "-" when missing.
func num(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a < 10:
		return fmt.Sprintf("%.2f", v)
	case a < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// ratio formats a/b as "12.3×".
func ratio(a, b float64) string {
	r := a / b
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "-"
	}
	return num(r) + "×"
}

// dur formats nanoseconds as a duration with three significant digits.
func dur(ns float64) string {
	if math.IsNaN(ns) {
		return "-"
	}
	d := time.Duration(ns)
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	case d >= time.Microsecond:
		return d.Round(10 * time.Nanosecond).String()
	}
	return d.String()
}

func pct(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*v)
}

// footer says how many runs the medians are over.
func footer(w io.Writer, rs *results, scenarios ...string) {
	n := 0
	for _, s := range scenarios {
		if r := rs.runs(s); n == 0 || (r > 0 && r < n) {
			n = r
		}
	}
	fmt.Fprintf(w, "   (medians of %d runs)\n", n)
}

// gridTable is the table of a scenario run per CPU count and parallelism:
// ns/op per implementation, goflame's allocs/op, and goflame's ratios.
func gridTable(w io.Writer, rs *results, scn string) {
	im := rs.impls(scn)
	tw := newTab(w)
	fmt.Fprintf(tw, "cpu\tpar\t%s\tgoflame allocs/op\tactor÷goflame\tgoflame÷semaphore\t\n", strings.Join(im, "\t"))
	for _, cpu := range rs.cpus(scn) {
		for _, p := range rs.params(scn) {
			fmt.Fprintf(tw, "%d\t%s\t", cpu, strings.TrimPrefix(p, "par="))
			for _, i := range im {
				fmt.Fprintf(tw, "%s\t", num(rs.median(scn, i, p, cpu, "ns/op")))
			}
			g := rs.median(scn, self, p, cpu, "ns/op")
			fmt.Fprintf(tw, "%s\t%s\t%s\t\n", num(rs.median(scn, self, p, cpu, "allocs/op")),
				ratio(rs.median(scn, actor, p, cpu, "ns/op"), g), ratio(g, rs.median(scn, semImp, p, cpu, "ns/op")))
		}
	}
	tw.Flush()
	footer(w, rs, scn)
}

func gridPlot(rs *results, scn, what string) []chart {
	c := chart{
		title:  what + ": ns/op by GOMAXPROCS and RunParallel parallelism (log scale; lower is better)",
		ylabel: "ns/op",
		series: rs.impls(scn),
		log:    true,
	}
	for _, cpu := range rs.cpus(scn) {
		for _, p := range rs.params(scn) {
			c.groups = append(c.groups, fmt.Sprintf("cpu=%d %s", cpu, p))
			c.values = append(c.values, medians(rs, scn, c.series, p, cpu, "ns/op"))
		}
	}
	return []chart{c}
}

func medians(rs *results, scn string, impls []string, params string, cpu int, unit string) []float64 {
	vs := make([]float64, len(impls))
	for i, im := range impls {
		vs[i] = rs.median(scn, im, params, cpu, unit)
	}
	return vs
}

// only returns the single params value of a scenario with one shape.
func only(rs *results, scn string) string {
	if ps := rs.params(scn); len(ps) > 0 {
		return ps[0]
	}
	return ""
}

func saturatedTable(w io.Writer, rs *results) {
	const scn, fifo = "Saturated", "FIFO"
	p, fp := only(rs, scn), only(rs, fifo)
	tw := newTab(w)
	fmt.Fprintf(tw, "cpu\timpl\tns/op\tcalls/s\twait p50\twait p99\twait max\tallocs/op\tFIFO inversions\t\n")
	for _, cpu := range rs.cpus(scn) {
		for _, im := range rs.impls(scn) {
			ns := rs.median(scn, im, p, cpu, "ns/op")
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", cpu, im, num(ns), num(1e9/ns),
				dur(rs.median(scn, im, p, cpu, "p50-ns")), dur(rs.median(scn, im, p, cpu, "p99-ns")),
				dur(rs.median(scn, im, p, cpu, "max-ns")), num(rs.median(scn, im, p, cpu, "allocs/op")),
				fifoCell(rs, im, fp, cpu))
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "   FIFO inversions: share of caller pairs served against arrival order, worst run (0 = exact FIFO)\n")
	for _, cpu := range rs.cpus(scn) {
		g := rs.median(scn, self, p, cpu, "ns/op")
		fmt.Fprintf(w, "   cpu=%d: goflame throughput %s actor's, %s semaphore's; p99 wait %s semaphore's\n", cpu,
			ratio(rs.median(scn, actor, p, cpu, "ns/op"), g), ratio(rs.median(scn, semImp, p, cpu, "ns/op"), g),
			ratio(rs.median(scn, self, p, cpu, "p99-ns"), rs.median(scn, semImp, p, cpu, "p99-ns")))
	}
	footer(w, rs, scn, fifo)
}

// heldTable is the pool-size scenario: goflame's Call per CPU count and
// pool size, and its ratio to the smallest pool.
func heldTable(w io.Writer, rs *results) {
	const scn = "CallHeld"
	ps := rs.params(scn)
	tw := newTab(w)
	fmt.Fprintf(tw, "cpu\trunners\tns/op\tallocs/op\t÷ %s\t\n", strings.TrimPrefix(first(ps), "runners="))
	for _, cpu := range rs.cpus(scn) {
		base := rs.median(scn, self, first(ps), cpu, "ns/op")
		for _, p := range ps {
			g := rs.median(scn, self, p, cpu, "ns/op")
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t\n", cpu, strings.TrimPrefix(p, "runners="), num(g),
				num(rs.median(scn, self, p, cpu, "allocs/op")), ratio(g, base))
		}
	}
	tw.Flush()
	footer(w, rs, scn)
}

// first is ps[0], or "" if there is none.
func first(ps []string) string {
	if len(ps) == 0 {
		return ""
	}
	return ps[0]
}

// worst is the largest value of unit over all runs of a benchmark.
func (rs *results) worst(scenario, impl, params string, cpu int, unit string) float64 {
	w := math.NaN()
	for _, s := range rs.samples {
		if s.Scenario == scenario && s.Impl == impl && s.Params == params && s.CPU == cpu {
			if v, ok := s.get(unit); ok && (math.IsNaN(w) || v > w) {
				w = v
			}
		}
	}
	return w
}

func fifoCell(rs *results, im, params string, cpu int) string {
	v := rs.worst("FIFO", im, params, cpu, "inversions")
	switch {
	case math.IsNaN(v):
		return "-"
	case v == 0:
		return "0 (FIFO)"
	}
	return fmt.Sprintf("%.4f", v)
}

func saturatedPlot(rs *results) []chart {
	const scn = "Saturated"
	p := only(rs, scn)
	tp := chart{title: "Saturated throughput: calls/s (higher is better)", ylabel: "calls/s", series: rs.impls(scn)}
	wait := chart{title: "Saturated wait p99 (log scale; lower is better)", ylabel: "µs", series: rs.impls(scn), log: true}
	for _, cpu := range rs.cpus(scn) {
		g := fmt.Sprintf("cpu=%d", cpu)
		tp.groups = append(tp.groups, g)
		wait.groups = append(wait.groups, g)
		ns := medians(rs, scn, tp.series, p, cpu, "ns/op")
		p99 := medians(rs, scn, wait.series, p, cpu, "p99-ns")
		for i := range ns {
			ns[i] = 1e9 / ns[i]
			p99[i] /= 1e3
		}
		tp.values = append(tp.values, ns)
		wait.values = append(wait.values, p99)
	}
	return []chart{tp, wait}
}

// single is the one CPU count a scenario ran at (the largest if several).
func single(rs *results, scn string) int {
	c := rs.cpus(scn)
	if len(c) == 0 {
		return 0
	}
	return c[len(c)-1]
}

func stormTable(w io.Writer, rs *results) {
	const scn = "TimeoutStorm"
	p, cpu := only(rs, scn), single(rs, scn)
	tw := newTab(w)
	fmt.Fprintf(tw, "impl\tns/attempt\tserved/s\tslot utilisation\tlate grants\tlost slots\t\n")
	for _, im := range rs.impls(scn) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", im, num(rs.median(scn, im, p, cpu, "ns/op")),
			num(rs.median(scn, im, p, cpu, "ok/s")), pct(rs.median(scn, im, p, cpu, "util")),
			pct(rs.median(scn, im, p, cpu, "late")), num(rs.worst(scn, im, p, cpu, "lost-slots")))
	}
	tw.Flush()
	fmt.Fprintf(w, "   cpu=%d. served/s: calls that got a slot in time (ideal capacity/hold = 4000/s, less the sleep's overshoot);\n", cpu)
	fmt.Fprintf(w, "   utilisation: slot time spent on work; late grants: share of grants whose caller had already given up\n")
	fmt.Fprintf(w, "   when fn began (its fn returns at once); lost slots: capacity not takeable afterwards, worst run\n")
	footer(w, rs, scn)
}

func stormPlot(rs *results) []chart {
	const scn = "TimeoutStorm"
	p, cpu := only(rs, scn), single(rs, scn)
	series := rs.impls(scn)
	ok := chart{title: "Timeout storm: calls served in time per second (higher is better)", ylabel: "served/s", series: series,
		groups: []string{fmt.Sprintf("cpu=%d", cpu)}, values: [][]float64{medians(rs, scn, series, p, cpu, "ok/s")}}
	util := medians(rs, scn, series, p, cpu, "util")
	late := medians(rs, scn, series, p, cpu, "late")
	for i := range util {
		util[i] *= 100
		late[i] *= 100
	}
	share := chart{title: "Timeout storm: slot utilisation and late grants (%)", ylabel: "%", series: series, ymax: 100,
		groups: []string{"slot utilisation", "late grants"}, values: [][]float64{util, late}}
	return []chart{ok, share}
}

func burstTable(w io.Writer, rs *results) {
	const scn = "Burst"
	p, cpu := only(rs, scn), single(rs, scn)
	tw := newTab(w)
	fmt.Fprintf(tw, "impl\tall served\tboot latencies\t\n")
	for _, im := range rs.impls(scn) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", im, dur(rs.median(scn, im, p, cpu, "all-served-ms")*1e6), num(rs.median(scn, im, p, cpu, "boots")))
	}
	tw.Flush()
	fmt.Fprintf(w, "   cpu=%d. Time from the burst's first call until all 80 callers are inside fn (each holds its slot\n", cpu)
	fmt.Fprintf(w, "   until then, so 10 runners must be up); actor is FLAME's rule: one boot at a time\n")
	footer(w, rs, scn)
}

func burstPlot(rs *results) []chart {
	const scn = "Burst"
	p, cpu := only(rs, scn), single(rs, scn)
	series := rs.impls(scn)
	return []chart{{
		title: "Burst of 80 callers from zero runners (boot 100 ms): time until all are served (lower is better)", ylabel: "ms",
		series: series, groups: []string{p}, values: [][]float64{medians(rs, scn, series, p, cpu, "all-served-ms")},
		refs: []refLine{{100, "1 boot"}, {200, "2 boots (target)"}},
	}}
}

var memUnits = []struct{ unit, head string }{
	{"heap-B/waiter", "heap B/waiter"},
	{"stack-B/waiter", "stack B/waiter"},
	{"B/runner", "B/runner"},
	{"goroutines/runner", "goroutines/runner"},
	{"B/cast", "B/cast"},
	{"goroutines/cast", "goroutines/cast"},
}

func memoryTable(w io.Writer, rs *results) {
	const scn = "Memory"
	p, cpu := only(rs, scn), single(rs, scn)
	tw := newTab(w)
	fmt.Fprintf(tw, "impl\t")
	for _, u := range memUnits {
		fmt.Fprintf(tw, "%s\t", u.head)
	}
	fmt.Fprintln(tw)
	for _, im := range rs.impls(scn) {
		fmt.Fprintf(tw, "%s\t", im)
		for _, u := range memUnits {
			fmt.Fprintf(tw, "%s\t", num(rs.median(scn, im, p, cpu, u.unit)))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintf(w, "   waiter: 1000 callers parked on a full pool (the goroutine itself not counted; stack = its growth);\n")
	fmt.Fprintf(w, "   runner: slope between pools of 16 and 256 runners (heap + stacks); cast: 1000 casts queued, goroutines\n")
	fmt.Fprintf(w, "   included (a baseline's cast is `go Do(...)`)\n")
	footer(w, rs, scn)
}

func memoryPlot(rs *results) []chart {
	const scn = "Memory"
	p, cpu := only(rs, scn), single(rs, scn)
	series := rs.impls(scn)
	bytes := chart{title: "Memory: bytes per waiting caller, per runner and per queued cast (lower is better)", ylabel: "bytes", series: series}
	gor := chart{title: "Goroutines per runner and per queued cast", ylabel: "goroutines", series: series}
	for _, u := range memUnits {
		c := &bytes
		if strings.HasPrefix(u.unit, "goroutines") {
			c = &gor
		}
		c.groups = append(c.groups, u.head)
		c.values = append(c.values, medians(rs, scn, series, p, cpu, u.unit))
	}
	return []chart{bytes, gor}
}

// target is one of the performance targets for goflame.
type target struct {
	name     string
	measured string // what was measured, worst case first
	ok       bool
	missing  bool // its scenario was not run
}

// gridWorst applies f (goflame's figure for one cpu × par cell, NaN if
// missing) to every cell and returns the worst by less, with its cell.
func gridWorst(rs *results, scn string, f func(params string, cpu int) float64, worse func(a, b float64) bool) (v float64, where string) {
	v = math.NaN()
	for _, cpu := range rs.cpus(scn) {
		for _, p := range rs.params(scn) {
			x := f(p, cpu)
			if !math.IsNaN(x) && (math.IsNaN(v) || worse(x, v)) {
				v, where = x, fmt.Sprintf("cpu=%d %s", cpu, p)
			}
		}
	}
	return v, where
}

func higher(a, b float64) bool { return a > b }
func lower(a, b float64) bool  { return a < b }

func targets(rs *results) []target {
	var ts []target
	add := func(name, scn string, v float64, where string, ok bool, format func(float64) string) {
		t := target{name: name, missing: len(rs.impls(scn)) == 0 || math.IsNaN(v)}
		if !t.missing {
			t.ok = ok
			t.measured = format(v)
			if where != "" {
				t.measured += " (worst: " + where + ")"
			}
		}
		ts = append(ts, t)
	}
	times := func(v float64) string { return num(v) + "×" }
	allocs := func(v float64) string { return num(v) + " allocs/op" }
	med := func(scn, im, unit string) func(string, int) float64 {
		return func(p string, cpu int) float64 { return rs.median(scn, im, p, cpu, unit) }
	}
	div := func(a, b func(string, int) float64) func(string, int) float64 {
		return func(p string, cpu int) float64 { return a(p, cpu) / b(p, cpu) }
	}

	v, at := gridWorst(rs, "FreeCheckout", med("FreeCheckout", self, "allocs/op"), higher)
	add("free capacity: 0 allocs/op", "FreeCheckout", v, unless(v == 0, at), v == 0, allocs)
	v, at = gridWorst(rs, "FreeCheckout", onCPUs(div(med("FreeCheckout", self, "ns/op"), med("FreeCheckout", semImp, "ns/op")), 2), higher)
	add("free capacity: ≤1.0× semaphore ns/op at GOMAXPROCS 2", "FreeCheckout", v, at, v <= 1, times)

	v, at = gridWorst(rs, "Call", med("Call", self, "allocs/op"), higher)
	add("full Call: ≤1 alloc/op", "Call", v, unless(v <= 1, at), v <= 1, allocs)
	v = scaling(rs)
	add("full Call: 8 callers per core on 2 cores ≤1.2× 1 caller on 1 core (ns/op)", "Call", v, "", v <= 1.2, times)
	v, at = gridWorst(rs, "Call", onParams(div(med("Call", actor, "ns/op"), med("Call", self, "ns/op")), "par=8"), lower)
	add("full Call: ≥10× actor throughput at par=8", "Call", v, at, v >= 10, times)
	v, at = gridWorst(rs, "Call", onParams(div(med("Call", self, "ns/op"), med("Call", semImp, "ns/op")), "par=1"), higher)
	add("full Call: ≤1.5× semaphore ns/op at par=1", "Call", v, at, v <= 1.5, times)

	v, at = gridWorst(rs, "CallHeld", func(p string, cpu int) float64 {
		return rs.median("CallHeld", self, p, cpu, "ns/op") / rs.median("CallHeld", self, first(rs.params("CallHeld")), cpu, "ns/op")
	}, higher)
	add("pool size: Call on 2,048 runners ≤2× on 4", "CallHeld", v, at, v <= 2, times)

	v, at = gridWorst(rs, "Saturated", func(p string, cpu int) float64 {
		return rs.median("Saturated", self, p, cpu, "ns/op") / rs.median("Saturated", mutexImp, p, cpu, "ns/op")
	}, higher)
	add("saturated: calls/s ≥ mutex's on 2 cores, ≥1/1.1 of it on 1", "Saturated", v, at, saturatedOK(rs), func(v float64) string { return "ns/op " + times(v) + " mutex's" })
	v, at = gridWorst(rs, "FIFO", func(p string, cpu int) float64 { return rs.worst("FIFO", self, p, cpu, "inversions") }, higher)
	add("saturated: exact FIFO", "FIFO", v, unless(v == 0, at), v == 0, func(v float64) string { return fmt.Sprintf("%.4f of pairs inverted", v) })

	v, _ = gridWorst(rs, "TimeoutStorm", func(p string, cpu int) float64 { return rs.worst("TimeoutStorm", self, p, cpu, "lost-slots") }, higher)
	add("timeout storm: no slot lost", "TimeoutStorm", v, "", v == 0, func(v float64) string { return num(v) + " lost" })

	v, at = gridWorst(rs, "Burst", med("Burst", self, "boots"), higher)
	add("burst: 10×MaxConcurrency callers served within 1.1 boot latencies", "Burst", v, at, v <= 1.1,
		func(v float64) string { return num(v) + " boot latencies" })
	return ts
}

// onCPUs restricts f to the given GOMAXPROCS (NaN elsewhere).
func onCPUs(f func(string, int) float64, cpu int) func(string, int) float64 {
	return func(p string, c int) float64 {
		if c != cpu {
			return math.NaN()
		}
		return f(p, c)
	}
}

// onParams restricts f to the given parameters (NaN elsewhere).
func onParams(f func(string, int) float64, params string) func(string, int) float64 {
	return func(p string, c int) float64 {
		if p != params {
			return math.NaN()
		}
		return f(p, c)
	}
}

// scaling is goflame's Call at 8 callers per core on 2 cores over its Call
// at one caller on one core.
func scaling(rs *results) float64 {
	return rs.median("Call", self, "par=8", 2, "ns/op") / rs.median("Call", self, "par=1", 1, "ns/op")
}

// saturatedOK: goflame's saturated throughput is at least the mutex pool's
// on 2 cores (and more), and within 1.1× of it on one.
func saturatedOK(rs *results) bool {
	const scn = "Saturated"
	p := only(rs, scn)
	for _, cpu := range rs.cpus(scn) {
		r := rs.median(scn, self, p, cpu, "ns/op") / rs.median(scn, mutexImp, p, cpu, "ns/op")
		if cpu == 1 && r > 1.1 || cpu > 1 && r > 1 {
			return false
		}
	}
	return true
}

// unless is where, or "" when the target is met everywhere alike.
func unless(met bool, where string) string {
	if met {
		return ""
	}
	return where
}

func targetsTable(w io.Writer, rs *results) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, t := range targets(rs) {
		state := "MISSED"
		switch {
		case t.missing:
			state, t.measured = "not run", ""
		case t.ok:
			state = "met"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.name, state, t.measured)
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}
