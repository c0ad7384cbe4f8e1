package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Tests of the harness itself: the command's parsing and plotting, and every
// scenario's workload at a small size, so that `go test ./bench` (and -race)
// keeps the harness from rotting. The benchmarks themselves are run once
// each by `go test -run '^$' -bench . -benchtime=1x ./bench/... ./flame`.

func TestParseLineReadsNameCPUAndMetrics(t *testing.T) {
	cpus := []int{1, 2}
	s, ok := parseLine("BenchmarkFreeCheckout/impl=goflame/par=8-2  \t 123456\t  25.3 ns/op\t 0 B/op\t 0 allocs/op", cpus)
	if !ok {
		t.Fatal("line not parsed")
	}
	if s.Scenario != "FreeCheckout" || s.Impl != "goflame" || s.Params != "par=8" || s.CPU != 2 || s.Iters != 123456 {
		t.Errorf("parsed %+v", s)
	}
	if v, ok := s.get("ns/op"); !ok || v != 25.3 {
		t.Errorf("ns/op = %v, %v", v, ok)
	}
	s, ok = parseLine("BenchmarkBurst/impl=actor/callers=80 1 1020586500 ns/op 1020 all-served-ms 10.20 boots", cpus)
	if !ok || s.CPU != 1 || s.Params != "callers=80" {
		t.Errorf("no -N suffix: parsed %+v, %v", s, ok)
	}
	if v, _ := s.get("boots"); v != 10.2 {
		t.Errorf("boots = %v", v)
	}
	// A suffix that is not one of the -cpu values belongs to the name.
	s, ok = parseLine("BenchmarkMemory/impl=goflame-16 1 5 ns/op", cpus)
	if !ok || s.Impl != "goflame-16" || s.CPU != 1 {
		t.Errorf("parsed %+v, %v", s, ok)
	}
	for _, line := range []string{
		"goos: linux", "PASS", "ok  \tgithub.com/goflame/goflame/bench\t1.2s",
		"BenchmarkX-2 --- FAIL", "BenchmarkFreeCheckout/impl=goflame/par=8-2",
	} {
		if _, ok := parseLine(line, cpus); ok {
			t.Errorf("parsed %q", line)
		}
	}
}

func TestMediansAreOverRunsOfTheSameBenchmark(t *testing.T) {
	rs := &results{}
	for _, v := range []float64{30, 10, 20, 1000} {
		cpu := 2
		if v == 1000 {
			cpu = 1
		}
		rs.add(sample{Scenario: "Call", Impl: "goflame", Params: "par=1", CPU: cpu, Metrics: []metric{{"ns/op", v}}})
	}
	if m := rs.median("Call", "goflame", "par=1", 2, "ns/op"); m != 20 {
		t.Errorf("median = %v, want 20", m)
	}
	if n := rs.runs("Call"); n != 1 {
		t.Errorf("runs = %d, want 1 (the fewest of any benchmark)", n)
	}
	if m := rs.median("Call", "actor", "par=1", 2, "ns/op"); !math.IsNaN(m) {
		t.Errorf("median of nothing = %v, want NaN", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("even median = %v", m)
	}
	var buf bytes.Buffer
	if err := rs.writeCSV(&buf); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "\n"); n != 5 {
		t.Errorf("csv has %d lines, want header + 4:\n%s", n, buf.String())
	}
}

func TestHistogramQuantilesAreWithinThreePercent(t *testing.T) {
	var h histogram
	for v := int64(1); v <= 100000; v++ {
		h.record(v * 100)
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		want := q * 100000 * 100
		if got := float64(h.quantile(q)); math.Abs(got-want)/want > 0.03 {
			t.Errorf("q%v = %v, want %v ±3%%", q, got, want)
		}
	}
	if h.max != 100000*100 || h.quantile(1) != h.max {
		t.Errorf("max = %d, q1 = %d", h.max, h.quantile(1))
	}
	// Buckets are contiguous and each value lies in its own bucket's range.
	prev := -1
	for v := int64(0); v < 1<<20; v += 1 + v/97 {
		i := histIndex(v)
		if i < prev {
			t.Fatalf("index of %d is %d, below %d", v, i, prev)
		}
		prev = i
		if mid := histValue(i); math.Abs(float64(mid-v)) > 0.035*float64(v)+1 {
			t.Fatalf("value %d in bucket %d with middle %d", v, i, mid)
		}
	}
}

func TestWriteSVGIsWellFormed(t *testing.T) {
	var buf bytes.Buffer
	err := writeSVG(&buf, "t <&> \"q\"", []chart{
		{title: "lin", groups: []string{"a", "b"}, series: []string{"goflame", "x"},
			values: [][]float64{{1, 2}, {math.NaN(), 3}}, refs: []refLine{{2.5, "ref"}}},
		{title: "log", log: true, groups: []string{"a"}, series: []string{"goflame", "actor"}, values: [][]float64{{20, 2e4}}},
		{title: "empty"},
	})
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(&buf)
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v", err)
		}
	}
}

func TestFmtNumIsShort(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 0.8681: "0.868", 12.34: "12.3", 456: "456", 1294: "1294", 25000: "25k", 3.2e6: "3.2M"} {
		if got := fmtNum(v); got != want {
			t.Errorf("fmtNum(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestArgsMatchGoTest(t *testing.T) {
	o := options{cpus: []int{1, 2}, count: 3}
	a := o.args(benchRun{bench: "BenchmarkCall", quick: "100ms", long: "1s", allCPUs: true})
	if got, want := strings.Join(a.display, " "), "-run '^$' -bench '^BenchmarkCall$' -benchmem -count 3 -cpu 1,2 -benchtime 100ms"; got != want {
		t.Errorf("display %q, want %q", got, want)
	}
	o.long, o.benchtime = true, "5s"
	a = o.args(benchRun{bench: "BenchmarkBurst", quick: "1x", long: "3x"})
	if got := strings.Join(a.exec, " "); !strings.Contains(got, "-test.cpu=2 -test.benchtime=3x") {
		t.Errorf("exec %q: want the largest cpu only and the long count-style benchtime", got)
	}
}

// forEachImpl runs f for every implementation as a subtest.
func forEachImpl(t *testing.T, f func(t *testing.T, im impl)) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) { f(t, im) })
	}
}

func TestFIFOProbeSeesExactFIFO(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		r, err := fifoProbe(mustNew(t, im, 1, 1), 16, fifoSpacing)
		if err != nil {
			t.Fatal(err)
		}
		// goflame, actor and mutex call ctx.Done only once the caller is
		// queued, so the probe's arrival order is their queue order and any
		// inversion is theirs. semaphore and puddle call it just before
		// queueing; their probe is best effort.
		if im.name == "goflame" || im.name == "actor" || im.name == "mutex" {
			if n := r.inversions(); n != 0 {
				t.Errorf("%d inversions, service order %v", n, r.order)
			}
		}
	})
}

func TestTimeoutStormLosesNoSlot(t *testing.T) {
	c := stormConfig{runners: 2, slots: 1, callers: 16, hold: time.Millisecond, patience: 300 * time.Microsecond}
	forEachImpl(t, func(t *testing.T, im impl) {
		p := mustNew(t, im, c.runners, c.slots)
		var st stormStats
		var wg sync.WaitGroup
		var left atomic.Int64
		left.Store(200)
		start := time.Now()
		for range c.callers {
			wg.Go(func() { stormWorker(p, c, func() bool { return left.Add(-1) >= 0 }, &st) })
		}
		wg.Wait()
		r := st.report(c, time.Since(start), c.capacity()-slotsTakeable(p, c.capacity(), 5*time.Second))
		if r.other != 0 || r.lost != 0 {
			t.Errorf("%d unexpected errors, %d slots lost", r.other, r.lost)
		}
		if st.ok.Load()+st.timedOut.Load()+st.late.Load() != 200 {
			t.Errorf("ok %d + timed out %d + late %d != 200 calls", st.ok.Load(), st.timedOut.Load(), st.late.Load())
		}
	})
}

func TestBurstServesEveryCaller(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		if im.grow == nil {
			t.Skip("cannot grow")
		}
		p, err := im.grow(3, 2, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		d, err := burst(p, 6, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if d < 10*time.Millisecond {
			t.Errorf("served in %v, before a single boot could finish", d)
		}
	})
}

func TestMemoryProbesRun(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		if _, err := waiterCost(im, 20); err != nil {
			t.Error(err)
		}
		if _, err := castCost(im, 20); err != nil {
			t.Error(err)
		}
		if _, err := runnerCost(im, 2, 6); err != nil {
			t.Error(err)
		}
	})
}
