// Command payloadbench measures how fast payloads move through a runner:
// a registered function that echoes a []byte, called by 4 goroutines at
// once, for payloads from 1 KiB to 8 MiB, in one run, against
//
//   - goflame-local:   LocalBackend (the payload still goes through the codec),
//   - goflame-process: ProcessBackend, 2 runner processes,
//   - netrpc-gob:     the standard library's net/rpc with gob, over socket
//     pairs to 2 child processes (2 connections each),
//   - raw-socketpair:  the floor: length-prefixed echo over the same socket
//     pairs, no encoding at all.
//
// Figures are MB/s each way (payload bytes sent per second; the same
// come back). With -svg it also writes a plot.
//
//	go run ./bench/payloadbench
//	go run ./bench/payloadbench -dur 2s -svg bench/results/payload.svg
//	go test -run '^$' -bench . ./bench/payloadbench      # the same as Go benchmarks
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goflame/goflame/bench/internal/measure"
	"github.com/goflame/goflame/flame"
)

// echo is the registered function: the payload comes back.
var echo = flame.Register("payloadbench.echo", func(_ context.Context, b []byte) ([]byte, error) { return b, nil })

// callers is how many goroutines call at once.
const callers = 4

// sizes are the payload sizes of the sweep.
var sizes = []int{1 << 10, 64 << 10, 1 << 20, 8 << 20}

// impls are the implementations, in table order.
var impls = []string{"goflame-local", "goflame-process", "netrpc-gob", "raw-socketpair"}

func main() {
	if serveChild() {
		return
	}
	flame.Main()
	dur := flag.Duration("dur", 2*time.Second, "how long each size and implementation runs")
	svg := flag.String("svg", "", "write a plot of the sweep to this file")
	flag.Parse()

	fmt.Printf("payload echo, %d callers: %s, GOMAXPROCS %d, %s/%s, %s\n\n", callers, runtime.Version(), runtime.GOMAXPROCS(0),
		runtime.GOOS, runtime.GOARCH, measure.CPUModel())
	fmt.Printf("%-10s", "payload")
	for _, name := range impls {
		fmt.Printf(" %16s", name)
	}
	fmt.Println("   (MB/s each way)")
	results := map[string][]float64{}
	for _, size := range sizes {
		fmt.Printf("%-10s", sizeName(size))
		for _, name := range impls {
			mbps, err := sweepOne(name, size, *dur)
			check(err)
			results[name] = append(results[name], mbps)
			fmt.Printf(" %16.0f", mbps)
		}
		fmt.Println()
	}
	if *svg != "" {
		check(os.WriteFile(*svg, plot(results), 0o644))
	}
}

// sweepOne runs one implementation at one size for d and returns MB/s
// each way.
func sweepOne(name string, size int, d time.Duration) (float64, error) {
	call, closeFn, err := setup(name)
	if err != nil {
		return 0, err
	}
	defer closeFn()
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i)
	}
	if err := call(payload); err != nil { // warm up: runners booted, buffers grown
		return 0, err
	}
	var n atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for time.Now().Before(stop) {
				if err := call(payload); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, fmt.Errorf("%s, %s: %w", name, sizeName(size), err)
	}
	return float64(n.Load()) * float64(size) / time.Since(start).Seconds() / 1e6, nil
}

// setup makes implementation name ready to call; the returned call checks
// that the echo came back whole.
func setup(name string) (call func([]byte) error, closeFn func(), err error) {
	switch name {
	case "goflame-local", "goflame-process":
		cfg := flame.Config{Name: "payload", Min: 2, Max: 2, MaxConcurrency: callers, Logger: quiet, BootTimeout: time.Minute}
		if name == "goflame-process" {
			cfg.Backend = flame.ProcessBackend{Logger: quiet, MaxMessageSize: 64 << 20}
		}
		p, err := flame.NewPool(cfg)
		if err != nil {
			return nil, nil, err
		}
		return func(b []byte) error {
			out, err := echo.Call(context.Background(), p, b)
			if err == nil && len(out) != len(b) {
				err = fmt.Errorf("echo of %d bytes came back with %d", len(b), len(out))
			}
			return err
		}, func() { _ = p.Close(context.Background()) }, nil
	case "netrpc-gob":
		return rpcClients()
	case "raw-socketpair":
		return rawClients()
	}
	return nil, nil, fmt.Errorf("unknown implementation %q", name)
}

// quiet is the pools' log: nothing to see in a benchmark.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func sizeName(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
