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

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests of the harness itself: the command's parsing and plotting, and every
// scenario's workload at a small size, so that `go test ./bench` (and -race)
// keeps the harness from rotting. The benchmarks themselves are run once
// each by `go test -run '^$' -bench . -benchtime=1x ./bench/... ./flame`.

func TestParseLineReadsNameCPUAndMetrics(t *testing.T) {
	cpus := []int{1, 2}
	s, ok := parseLine("BenchmarkFreeCheckout/impl=goflame/par=8-2  \t 123456\t  25.3 ns/op\t 0 B/op\t 0 allocs/op", cpus)
	require.True(t, ok, "line not parsed")
	assert.Equal(t, "FreeCheckout", s.Scenario, "parsed %+v", s)
	assert.Equal(t, "goflame", s.Impl, "parsed %+v", s)
	assert.Equal(t, "par=8", s.Params, "parsed %+v", s)
	assert.Equal(t, 2, s.CPU, "parsed %+v", s)
	assert.Equal(t, int64(123456), s.Iters, "parsed %+v", s)
	v, ok := s.get("ns/op")
	assert.True(t, ok, "ns/op = %v, %v", v, ok)
	assert.Equal(t, 25.3, v, "ns/op = %v, %v", v, ok)
	s, ok = parseLine("BenchmarkBurst/impl=actor/callers=80 1 1020586500 ns/op 1020 all-served-ms 10.20 boots", cpus)
	assert.True(t, ok, "no -N suffix: parsed %+v, %v", s, ok)
	assert.Equal(t, 1, s.CPU, "no -N suffix: parsed %+v, %v", s, ok)
	assert.Equal(t, "callers=80", s.Params, "no -N suffix: parsed %+v, %v", s, ok)
	v, _ = s.get("boots")
	assert.Equal(t, 10.2, v, "boots")
	// A suffix that is not one of the -cpu values belongs to the name.
	s, ok = parseLine("BenchmarkMemory/impl=goflame-16 1 5 ns/op", cpus)
	assert.True(t, ok, "parsed %+v, %v", s, ok)
	assert.Equal(t, "goflame-16", s.Impl, "parsed %+v, %v", s, ok)
	assert.Equal(t, 1, s.CPU, "parsed %+v, %v", s, ok)
	for _, line := range []string{
		"goos: linux", "PASS", "ok  \tgithub.com/goflame/goflame/bench\t1.2s",
		"BenchmarkX-2 --- FAIL", "BenchmarkFreeCheckout/impl=goflame/par=8-2",
	} {
		_, ok := parseLine(line, cpus)
		assert.False(t, ok, "parsed %q", line)
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
	assert.Equal(t, 20.0, rs.median("Call", "goflame", "par=1", 2, "ns/op"), "median")
	assert.Equal(t, 1, rs.runs("Call"), "runs, want 1 (the fewest of any benchmark)")
	m := rs.median("Call", "actor", "par=1", 2, "ns/op")
	assert.True(t, math.IsNaN(m), "median of nothing = %v, want NaN", m)
	assert.Equal(t, 2.5, median([]float64{4, 1, 3, 2}), "even median")
	var buf bytes.Buffer
	require.NoError(t, rs.writeCSV(&buf))
	assert.Equal(t, 5, strings.Count(buf.String(), "\n"), "csv lines, want header + 4:\n%s", buf.String())
}

func TestHistogramQuantilesAreWithinThreePercent(t *testing.T) {
	var h histogram
	for v := int64(1); v <= 100000; v++ {
		h.record(v * 100)
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		want := q * 100000 * 100
		got := float64(h.quantile(q))
		assert.InEpsilon(t, want, got, 0.03, "q%v = %v, want %v ±3%%", q, got, want)
	}
	assert.Equal(t, int64(100000*100), h.max, "max = %d, q1 = %d", h.max, h.quantile(1))
	assert.Equal(t, h.max, h.quantile(1), "max = %d, q1 = %d", h.max, h.quantile(1))
	// Buckets are contiguous and each value lies in its own bucket's range.
	prev := -1
	for v := int64(0); v < 1<<20; v += 1 + v/97 {
		i := histIndex(v)
		require.GreaterOrEqual(t, i, prev, "index of %d is %d, below %d", v, i, prev)
		prev = i
		mid := histValue(i)
		require.InDelta(t, v, mid, 0.035*float64(v)+1, "value %d in bucket %d with middle %d", v, i, mid)
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
	require.NoError(t, err)
	d := xml.NewDecoder(&buf)
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "not well-formed XML")
	}
}

func TestFmtNumIsShort(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 0.8681: "0.868", 12.34: "12.3", 456: "456", 1294: "1294", 25000: "25k", 3.2e6: "3.2M"} {
		assert.Equal(t, want, fmtNum(v), "fmtNum(%v)", v)
	}
}

func TestArgsMatchGoTest(t *testing.T) {
	o := options{cpus: []int{1, 2}, count: 3}
	a := o.args(benchRun{bench: "BenchmarkCall", quick: "100ms", long: "1s", allCPUs: true})
	assert.Equal(t, "-run '^$' -bench '^BenchmarkCall$' -benchmem -count 3 -cpu 1,2 -benchtime 100ms", strings.Join(a.display, " "), "display")
	o.long, o.benchtime = true, "5s"
	a = o.args(benchRun{bench: "BenchmarkBurst", quick: "1x", long: "3x"})
	assert.Contains(t, strings.Join(a.exec, " "), "-test.cpu=2 -test.benchtime=3x", "exec: want the largest cpu only and the long count-style benchtime")
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
		require.NoError(t, err)
		// goflame, actor and mutex call ctx.Done only once the caller is
		// queued, so the probe's arrival order is their queue order and any
		// inversion is theirs. semaphore and puddle call it just before
		// queueing; their probe is best effort.
		if im.name == "goflame" || im.name == "actor" || im.name == "mutex" {
			n := r.inversions()
			assert.Zero(t, n, "%d inversions, service order %v", n, r.order)
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
		assert.Zero(t, r.other, "%d unexpected errors, %d slots lost", r.other, r.lost)
		assert.Zero(t, r.lost, "%d unexpected errors, %d slots lost", r.other, r.lost)
		ok, timedOut, late := st.ok.Load(), st.timedOut.Load(), st.late.Load()
		assert.Equal(t, int64(200), ok+timedOut+late, "ok %d + timed out %d + late %d != 200 calls", ok, timedOut, late)
	})
}

func TestBurstServesEveryCaller(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		if im.grow == nil {
			t.Skip("cannot grow")
		}
		p, err := im.grow(3, 2, 10*time.Millisecond)
		require.NoError(t, err)
		defer p.Close()
		d, err := burst(p, 6, 30*time.Second)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, d, 10*time.Millisecond, "served in %v, before a single boot could finish", d)
	})
}

func TestMemoryProbesRun(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		_, err := waiterCost(im, 20)
		assert.NoError(t, err)
		_, err = castCost(im, 20)
		assert.NoError(t, err)
		_, err = runnerCost(im, 2, 6)
		assert.NoError(t, err)
	})
}
