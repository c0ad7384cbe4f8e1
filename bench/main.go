// Command bench is goflame's benchmark harness. It runs the scenarios of the
// benchmark suite, goflame against the baseline pools in bench/peers, and
// prints one table per scenario plus the performance targets met or missed:
//
//	go run ./bench                       # quick: every scenario, under 2 minutes on 2 cores
//	go run ./bench -long -out bench/results
//	go run ./bench -scenarios free,call -cpu 1,2,4 -count 5
//
// Every scenario is an ordinary Go benchmark (so benchstat can compare runs):
// free-capacity checkout+release is BenchmarkFreeCheckout in flame (goflame's
// half: its checkout is unexported) and here (the baselines' half); the
// others are in this directory's _test.go files. The command compiles the two test
// binaries once (go test -c), runs each scenario's benchmarks in them as a
// subprocess, exactly as `go test -bench` would, and reads their output; it
// prints the equivalent go test command for each scenario, so every number
// can be reproduced without it. Medians are over -count runs, taken in
// rounds (every benchmark of a scenario once, then again) so that load from
// elsewhere on a shared machine does not land on one implementation only. With -out DIR
// it also writes DIR/bench.txt (the raw output, for benchstat),
// DIR/results.csv (every run's every metric) and one SVG plot per scenario.
//
// Run it from inside the repository (it calls the go command). This is a
// module of its own, so that the library's module needs none of the
// baselines' dependencies; the repository's go.work joins the two.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// benchRun is one benchmark a scenario runs.
type benchRun struct {
	pkg   string // package directory relative to the repository root
	bench string // benchmark function name
	// quick and long are the -benchtime of the quick and the -long run.
	quick, long string
	// allCPUs: run at every -cpu value; otherwise only at the largest.
	allCPUs bool
}

// scenario is one group of benchmarks with its own table and plot.
type scenario struct {
	key   string // -scenarios name, and the plot's file name
	title string
	runs  []benchRun
	table func(w io.Writer, rs *results)
	plot  func(rs *results) []chart
}

var scenarios = []scenario{
	{
		key:   "free",
		title: "Free capacity: checkout + release, 4 runners × 64 slots (ns/op)",
		runs: []benchRun{ // goflame's half lives in package flame: its checkout is unexported
			{pkg: "flame", bench: "BenchmarkFreeCheckout", quick: "100ms", long: "1s", allCPUs: true},
			{pkg: "bench", bench: "BenchmarkFreeCheckout", quick: "100ms", long: "1s", allCPUs: true},
		},
		table: func(w io.Writer, rs *results) { gridTable(w, rs, "FreeCheckout") },
		plot:  func(rs *results) []chart { return gridPlot(rs, "FreeCheckout", "checkout + release") },
	},
	{
		key:   "call",
		title: "Full Call path: no-op fn, default Config, 4 runners × 64 slots (ns/op; peers: Acquire, fn, Release)",
		runs:  []benchRun{{pkg: "bench", bench: "BenchmarkCall", quick: "100ms", long: "1s", allCPUs: true}},
		table: func(w io.Writer, rs *results) { gridTable(w, rs, "Call") },
		plot:  func(rs *results) []chart { return gridPlot(rs, "Call", "Call (no-op fn)") },
	},
	{
		key:   "held",
		title: "Pool size: Call with one slot of two held on every runner (ns/op)",
		runs: []benchRun{ // goflame only, in package flame: it holds slots with the unexported checkout
			{pkg: "flame", bench: "BenchmarkCallHeld", quick: "100ms", long: "1s", allCPUs: true},
		},
		table: heldTable,
		plot: func(rs *results) []chart {
			return gridPlot(rs, "CallHeld", "Call, one slot of two held on each runner")
		},
	},
	{
		key:   "saturated",
		title: "Saturated: 256 callers on 4 runners × 2 slots; FIFO probe: 64 callers queued on 1 slot",
		runs: []benchRun{
			{pkg: "bench", bench: "BenchmarkSaturated", quick: "150ms", long: "2s", allCPUs: true},
			{pkg: "bench", bench: "BenchmarkFIFO", quick: "3x", long: "20x", allCPUs: true},
		},
		table: saturatedTable,
		plot:  saturatedPlot,
	},
	{
		key:   "storm",
		title: "Timeout storm: 128 callers on 4 runners × 2 slots, hold 2ms, patience 1ms",
		runs:  []benchRun{{pkg: "bench", bench: "BenchmarkTimeoutStorm", quick: "300ms", long: "3s"}},
		table: stormTable,
		plot:  stormPlot,
	},
	{
		key:   "burst",
		title: "Burst growth from zero: 80 callers, Max 10 × MaxConcurrency 8, boot 100ms",
		runs:  []benchRun{{pkg: "bench", bench: "BenchmarkBurst", quick: "1x", long: "3x"}},
		table: burstTable,
		plot:  burstPlot,
	},
	{
		key:   "memory",
		title: "Memory: per waiting caller, per runner, per queued cast",
		runs:  []benchRun{{pkg: "bench", bench: "BenchmarkMemory", quick: "1x", long: "1x"}},
		table: memoryTable,
		plot:  memoryPlot,
	},
}

type options struct {
	scenarios []scenario
	cpus      []int
	count     int
	long      bool
	benchtime string
	out       string
	verbose   bool
}

func main() {
	var (
		names     = flag.String("scenarios", "all", "comma-separated scenarios to run: "+scenarioKeys()+", or all")
		cpu       = flag.String("cpu", defaultCPUs(), "comma-separated GOMAXPROCS values for the scenarios that scale (free, call, saturated); the others run at the largest")
		count     = flag.Int("count", 0, "runs of each benchmark; the table shows medians (default 3, or 6 with -long)")
		long      = flag.Bool("long", false, "longer runs: -benchtime 1-3s per benchmark and -count 6")
		benchtime = flag.String("benchtime", "", "override -benchtime for every throughput benchmark (free, call, saturated, storm)")
		out       = flag.String("out", "", "directory for bench.txt (raw output), results.csv and one SVG plot per scenario")
		verbose   = flag.Bool("v", false, "echo the raw benchmark output")
	)
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./bench [flags]\n\n%s\nflags:\n", usageText)
		flag.PrintDefaults()
	}
	flag.Parse()
	o := options{long: *long, benchtime: *benchtime, out: *out, verbose: *verbose, count: *count}
	if o.count <= 0 {
		o.count = 3
		if o.long {
			o.count = 6
		}
	}
	var err error
	if o.scenarios, err = pickScenarios(*names); err == nil {
		o.cpus, err = parseCPUs(*cpu)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

const usageText = `Runs goflame's benchmark scenarios against the baselines in bench/peers
(actor: a Go port of FLAME's pool; semaphore: x/sync/semaphore; puddle:
jackc/puddle/v2; mutex: a mutex-guarded pool) and prints medians, ratios and
the targets met or missed. Each scenario is a Go benchmark run in a compiled
test binary; the equivalent go test command is printed with its table.`

func scenarioKeys() string {
	keys := make([]string, len(scenarios))
	for i, s := range scenarios {
		keys[i] = s.key
	}
	return strings.Join(keys, ",")
}

func pickScenarios(names string) ([]scenario, error) {
	if names == "all" || names == "" {
		return scenarios, nil
	}
	var out []scenario
	for n := range strings.SplitSeq(names, ",") {
		i := slices.IndexFunc(scenarios, func(s scenario) bool { return s.key == strings.TrimSpace(n) })
		if i < 0 {
			return nil, fmt.Errorf("unknown scenario %q (have %s)", n, scenarioKeys())
		}
		out = append(out, scenarios[i])
	}
	return out, nil
}

func defaultCPUs() string {
	if n := runtime.NumCPU(); n > 1 {
		return "1," + strconv.Itoa(n)
	}
	return "1"
}

func parseCPUs(s string) ([]int, error) {
	var cpus []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad -cpu value %q", f)
		}
		if !slices.Contains(cpus, n) {
			cpus = append(cpus, n)
		}
	}
	if len(cpus) == 0 {
		return nil, errors.New("-cpu is empty")
	}
	slices.Sort(cpus)
	return cpus, nil
}

// run builds the test binaries, runs the scenarios and reports.
func run(ctx context.Context, o options) error {
	start := time.Now()
	root, err := repoRoot(ctx)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "goflame-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	var raw io.Writer = io.Discard
	if o.out != "" {
		if err := os.MkdirAll(o.out, 0o755); err != nil {
			return err
		}
		f, err := os.Create(filepath.Join(o.out, "bench.txt"))
		if err != nil {
			return err
		}
		defer f.Close()
		raw = f
	}

	bins := map[string]string{}
	for _, sc := range o.scenarios {
		for _, r := range sc.runs {
			if _, ok := bins[r.pkg]; ok {
				continue
			}
			bin := filepath.Join(tmp, r.pkg+".test")
			progress("building %s tests", "./"+r.pkg)
			cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, "./"+r.pkg)
			cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("go test -c ./%s: %w", r.pkg, err)
			}
			bins[r.pkg] = bin
		}
	}

	rs := &results{}
	fmt.Printf("goflame benchmark harness: %s, %s/%s, %d CPUs, -count %d%s\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), o.count, map[bool]string{true: ", -long"}[o.long])
	for _, sc := range o.scenarios {
		var cmds []string
		t0 := time.Now()
		for _, r := range sc.runs {
			cmds = append(cmds, "go test "+strings.Join(o.args(r).display, " ")+" ./"+r.pkg)
		}
		// -count rounds of every benchmark, rather than -count runs of one
		// benchmark in a row, so that a burst of load from elsewhere on the
		// machine spreads over all implementations instead of skewing one.
		for round := range o.count {
			for _, r := range sc.runs {
				progress("%s: %s, round %d of %d", sc.key, r.bench, round+1, o.count)
				cmd := exec.CommandContext(ctx, bins[r.pkg], o.args(r).exec...)
				cmd.Dir = filepath.Join(root, r.pkg)
				if err := runBench(cmd, o, raw, rs); err != nil {
					return fmt.Errorf("%s: %w", r.bench, err)
				}
			}
		}
		progress("%s: done in %v", sc.key, time.Since(t0).Round(100*time.Millisecond))
		fmt.Printf("\n== %s\n", sc.title)
		for _, c := range cmds {
			fmt.Printf("   %s\n", c)
		}
		fmt.Println()
		sc.table(os.Stdout, rs)
		if o.out != "" {
			if err := writePlot(filepath.Join(o.out, sc.key+".svg"), sc.title, sc.plot(rs)); err != nil {
				return err
			}
		}
	}
	fmt.Printf("\n== Targets (goflame)\n\n")
	targetsTable(os.Stdout, rs)
	if o.out != "" {
		f, err := os.Create(filepath.Join(o.out, "results.csv"))
		if err != nil {
			return err
		}
		if err := rs.writeCSV(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		fmt.Printf("\nwrote %s: bench.txt, results.csv and one .svg per scenario\n", o.out)
	}
	fmt.Printf("\ntotal wall time %v\n", time.Since(start).Round(time.Second))
	return nil
}

// benchArgs are the test binary's flags, and the same as go test flags.
type benchArgs struct{ exec, display []string }

func (o options) args(r benchRun) benchArgs {
	bt := r.quick
	if o.long {
		bt = r.long
	}
	if o.benchtime != "" && !strings.HasSuffix(r.quick, "x") {
		bt = o.benchtime
	}
	cpus := o.cpus
	if !r.allCPUs {
		cpus = cpus[len(cpus)-1:]
	}
	cpu := strings.Trim(strings.Join(strings.Fields(fmt.Sprint(cpus)), ","), "[]")
	flags := [][2]string{
		{"run", "^$"}, {"bench", "^" + r.bench + "$"}, {"benchmem", ""},
		{"count", strconv.Itoa(o.count)}, {"cpu", cpu}, {"benchtime", bt},
	}
	var a benchArgs
	for _, f := range flags {
		if f[0] == "count" { // the binary runs once per round
			a.exec = append(a.exec, "-test.count=1")
			a.display = append(a.display, "-count "+f[1])
			continue
		}
		if f[1] == "" {
			a.exec = append(a.exec, "-test."+f[0])
			a.display = append(a.display, "-"+f[0])
			continue
		}
		a.exec = append(a.exec, "-test."+f[0]+"="+f[1])
		v := f[1]
		if strings.ContainsAny(v, "^$*") {
			v = "'" + v + "'"
		}
		a.display = append(a.display, "-"+f[0]+" "+v)
	}
	return a
}

// runBench runs one benchmark binary, copying its output to raw (and to
// stderr with -v) and collecting the results.
func runBench(cmd *exec.Cmd, o options, raw io.Writer, rs *results) error {
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	var tail []string // the last lines, for the error message
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(raw, line)
		if o.verbose {
			fmt.Fprintln(os.Stderr, line)
		}
		if s, ok := parseLine(line, o.cpus); ok {
			rs.add(s)
		}
		if tail = append(tail, line); len(tail) > 30 {
			tail = tail[1:]
		}
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("%w\n%s%s", err, strings.Join(tail, "\n"), stderr.String())
	}
	return nil
}

// repoRoot is the repository's root: the directory of its go.work, which
// holds the library module and this one.
func repoRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOWORK").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOWORK: %w", err)
	}
	work := strings.TrimSpace(string(out))
	if work == "" || work == "off" {
		return "", errors.New("not inside the goflame repository (no go.work): run go run ./bench from the repository")
	}
	return filepath.Dir(work), nil
}

func writePlot(path, title string, panels []chart) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := writeSVG(f, title, panels); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}
