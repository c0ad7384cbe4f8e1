// Command kubebench measures goflame's runners as Kubernetes pods, on the
// test cluster (a real kube-apiserver, etcd, scheduler and controller
// manager on loopback, with a stand-in kubelet whose pods are processes
// in network namespaces): the boot of a pod runner, from the pod's
// creation to the runner's READY (p50, p99); the time to stop it, until
// its pod is gone from the API; and the round trip of a small call
// through it (p50, p99).
//
//	go run ./bench/kubebench                 # needs root and iproute2
//	go test -bench . ./bench/kubebench       # the same as Go benchmarks
//
// The control plane is built on first use (kube/hack/build-control-plane.sh).
// There is no image pull and no container runtime here: on a real cluster
// a pod's boot adds the node's image pull and container start.
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
	"time"

	"github.com/goflame/goflame/bench/internal/measure"
	"github.com/goflame/goflame/flame"
	"github.com/goflame/goflame/internal/kubetest"
	"github.com/goflame/goflame/kube"
)

// incr is the small call: an int in, an int out.
var incr = flame.Register("kubebench.incr", func(ctx context.Context, n int) (int, error) { return n + 1, nil })

func main() {
	flame.Main()
	boots := flag.Int("boots", 20, "pod runner boots to time")
	calls := flag.Int("calls", 5000, "sequential calls for the round-trip percentiles")
	flag.Parse()

	fmt.Printf("goflame runners as Kubernetes pods: %s, GOMAXPROCS %d, %s/%s, %s\n\n", runtime.Version(), runtime.GOMAXPROCS(0),
		runtime.GOOS, runtime.GOARCH, measure.CPUModel())
	b, err := setup()
	check(err)
	defer b.close()
	boot, stop, err := b.bootTimes(*boots)
	check(err)
	p, err := b.pool()
	check(err)
	lat, err := latencies(p, *calls)
	check(err)
	check(p.Close(context.Background()))
	fmt.Printf("%-28s %12s %12s\n", "", "p50", "p99")
	row := func(name string, ts []time.Duration, round time.Duration) {
		fmt.Printf("%-28s %12v %12v\n", name, measure.Pct(ts, 50).Round(round), measure.Pct(ts, 99).Round(round))
	}
	row(fmt.Sprintf("boot, create to READY (%d)", len(boot)), boot, 100*time.Microsecond)
	row("stop, until the pod is gone", stop, 100*time.Microsecond)
	row(fmt.Sprintf("round trip, small call (%d)", len(lat)), lat, 100*time.Nanosecond)
}

// bench is a namespace on the test cluster with a parent pod (this
// process) and a launcher for it.
type bench struct {
	env      *kubetest.Env
	launcher *kube.Launcher
}

func setup() (*bench, error) {
	env, err := kubetest.Start(nil)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	const ns = "kubebench"
	if err := env.Cluster.Namespace(ctx, ns); err != nil {
		env.Stop()
		return nil, err
	}
	if _, err := env.ParentPod(ctx, ns, "app", "default", nil); err != nil {
		env.Stop()
		return nil, err
	}
	return &bench{env: env, launcher: &kube.Launcher{Client: env.Cluster.Admin, PodName: "app", Namespace: ns}}, nil
}

func (b *bench) close() { b.env.Stop() }

// quiet is the pools' log: nothing to see in a benchmark.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func (b *bench) backend() (*flame.RemoteBackend, error) {
	be, err := kube.NewBackend(b.launcher, 0)
	if err != nil {
		return nil, err
	}
	be.Logger = quiet
	return be, nil
}

// bootTimes boots n pod runners one after the other and returns their
// boot times (pod created to READY) and stop times (SHUTDOWN until the pod
// is gone from the API), sorted.
func (b *bench) bootTimes(n int) (boot, stop []time.Duration, err error) {
	be, err := b.backend()
	if err != nil {
		return nil, nil, err
	}
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		start := time.Now()
		node, err := be.Boot(ctx, flame.RunnerSpec{Pool: "kubebench", ID: uint64(i + 1)})
		boot = append(boot, time.Since(start))
		if err != nil {
			cancel()
			return nil, nil, err
		}
		start = time.Now()
		err = node.Shutdown(ctx)
		stop = append(stop, time.Since(start))
		cancel()
		if err != nil {
			return nil, nil, err
		}
	}
	slices.Sort(boot)
	slices.Sort(stop)
	return boot, stop, nil
}

// pool is a pool of one pod runner, booted.
func (b *bench) pool() (*flame.Pool, error) {
	be, err := b.backend()
	if err != nil {
		return nil, err
	}
	return flame.NewPool(flame.Config{Name: "kubebench", Min: 1, Max: 1, Backend: be, Logger: quiet, BootTimeout: time.Minute})
}

// latencies makes n sequential small calls, after a warm-up, and returns
// their round trips, sorted.
func latencies(p *flame.Pool, n int) ([]time.Duration, error) {
	return measure.Sequential(n, 500, func(i int) error {
		_, err := incr.Call(context.Background(), p, i)
		return err
	})
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
