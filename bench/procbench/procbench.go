// Command procbench measures goflame's runners in other processes on this
// machine, over each transport: a child process's socket pair
// (ProcessBackend), and TCP with TLS (RemoteBackend with the command
// launcher) over loopback and over a veth link into a network namespace.
// For each it gives the boot time of a runner (launch to READY), the
// round trip of a small registered call (p50, p99), and the throughput of
// small calls with 1, 8 and 64 concurrent callers, in one run.
//
//	go run ./bench/procbench                 # the table, every transport this machine can run
//	go run ./bench/procbench -transports socketpair,tls-loopback
//	go test -bench . -benchtime 2s ./bench/procbench   # the same as Go benchmarks
//
// tls-veth needs root and iproute2 (it makes a network namespace and
// removes it afterwards). The same binary is its own runner: main calls
// flame.Main first.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goflame/goflame/bench/internal/measure"
	"github.com/goflame/goflame/flame"
)

// incr is the small call: an int in, an int out.
var incr = flame.Register("procbench.incr", func(ctx context.Context, n int) (int, error) { return n + 1, nil })

func main() {
	flame.Main()
	boots := flag.Int("boots", 20, "runner boots to time")
	calls := flag.Int("calls", 20000, "sequential calls for the latency percentiles")
	dur := flag.Duration("dur", 3*time.Second, "duration of each throughput run")
	runnerProcs := flag.Int("runner-procs", 0, "GOMAXPROCS of the runner processes (0: Go's default)")
	flag.StringVar(&runnerCPU, "runner-cpu", "", "CPUs the runners run on (a taskset(1) list); with the parent pinned too, e.g. `taskset -c 0 procbench -runner-cpu 0`, every transport runs with the same placement")
	which := flag.String("transports", "", "comma-separated transports to measure: socketpair, tls-loopback, tls-veth (default: every one this machine can run)")
	flag.Parse()
	if *runnerProcs > 0 {
		runnerEnv = []string{fmt.Sprintf("GOMAXPROCS=%d", *runnerProcs)}
	}

	fmt.Printf("goflame runners in other processes: %s, GOMAXPROCS %d (runners: %s), %s/%s, %s\n\n", runtime.Version(), runtime.GOMAXPROCS(0),
		procsOf(*runnerProcs), runtime.GOOS, runtime.GOARCH, measure.CPUModel())
	ts, err := transports(*which)
	check(err)
	defer func() {
		for _, t := range ts {
			t.close()
		}
	}()
	fmt.Printf("%-13s %21s %23s %12s %12s %12s\n", "transport", "boot p50 / p99", "round trip p50 / p99", "1 caller", "8 callers", "64 callers")
	for _, t := range ts {
		bt, err := bootTimes(t, *boots)
		check(err)
		p, err := t.pool()
		check(err)
		lat, err := latencies(p, *calls)
		check(err)
		runner, err := runnerPID.Call(context.Background(), p, struct{}{})
		check(err)
		var rates []string
		for _, callers := range []int{1, 8, 64} {
			cpu0 := cpuTime(os.Getpid()) + cpuTime(runner)
			n, el, err := throughput(p, callers, *dur)
			check(err)
			cpu := cpuTime(os.Getpid()) + cpuTime(runner) - cpu0
			rates = append(rates, fmt.Sprintf("%7.0f/s %3.0fµs", float64(n)/el.Seconds(), float64(cpu.Nanoseconds())/1000/float64(n)))
		}
		check(p.Close(context.Background()))
		fmt.Printf("%-13s %9v / %-9v %10v / %-10v %s\n", t.name, measure.Pct(bt, 50).Round(10*time.Microsecond), measure.Pct(bt, 99).Round(10*time.Microsecond),
			measure.Pct(lat, 50).Round(100*time.Nanosecond), measure.Pct(lat, 99).Round(100*time.Nanosecond), strings.Join(rates, " "))
	}
	fmt.Println("\n(throughput columns: calls/s, and CPU per call of parent + runner)")
}

// runnerPID reports the runner's process id, to read its CPU time.
var runnerPID = flame.Register("procbench.pid", func(ctx context.Context, _ struct{}) (int, error) { return os.Getpid(), nil })

// cpuTime is the user + system CPU time of a process so far (Linux
// /proc; 0 elsewhere), at clock-tick resolution.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

func procsOf(n int) string {
	if n > 0 {
		return fmt.Sprint(n)
	}
	return "default"
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// quiet is the runners' log: nothing to see in a benchmark.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// runnerEnv is added to the runners' environment (-runner-procs).
var runnerEnv []string

// runnerCPU pins the runners (-runner-cpu).
var runnerCPU string

// runnerCommand is how a runner process is started: this program, under
// taskset when -runner-cpu pins the runners. The kernel places the two
// ends of a Unix socket pair on one CPU as they wake each other, but not
// the two ends of a loopback TCP connection (woken from softirq), so
// without pinning a comparison of the transports compares placements as
// much as transports.
func runnerCommand() (string, []string, error) {
	exe, err := os.Executable()
	if err != nil || runnerCPU == "" {
		return exe, nil, err
	}
	return "taskset", []string{"-c", runnerCPU, exe}, nil
}

// bootTimes boots n runners one after the other over t and returns their
// boot times (launch to READY), sorted.
func bootTimes(t *transport, n int) ([]time.Duration, error) {
	var ts []time.Duration
	for i := range n {
		d, err := bootOnce(t, uint64(i+1))
		if err != nil {
			return nil, err
		}
		ts = append(ts, d)
	}
	slices.Sort(ts)
	return ts, nil
}

// bootOnce times one Boot and shuts the runner down.
func bootOnce(t *transport, id uint64) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	node, err := t.backend().Boot(ctx, flame.RunnerSpec{Pool: "boot", ID: id})
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	if err := node.Shutdown(ctx); err != nil {
		return 0, err
	}
	return d, nil
}

// latencies makes n sequential calls (after a warm-up) and returns their
// round-trip times, sorted.
func latencies(p *flame.Pool, n int) ([]time.Duration, error) {
	return measure.Sequential(n, 1000, func(i int) error {
		_, err := incr.Call(context.Background(), p, i)
		return err
	})
}

// throughput runs callers goroutines calling in a loop for d and returns
// how many calls completed and the time taken.
func throughput(p *flame.Pool, callers int, d time.Duration) (int64, time.Duration, error) {
	ctx := context.Background()
	var n atomic.Int64
	var firstErr atomic.Pointer[error]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for range callers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := incr.Call(ctx, p, i); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				n.Add(1)
			}
		})
	}
	time.Sleep(d)
	close(stop)
	wg.Wait()
	el := time.Since(start)
	if e := firstErr.Load(); e != nil {
		return 0, 0, *e
	}
	return n.Load(), el, nil
}
