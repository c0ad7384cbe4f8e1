package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goflame/goflame/flame"
)

// Scenario 4: a timeout storm. Far more callers than slots, each willing to
// wait only a little less than a slot is held, so most give up before a
// slot frees. What matters is that the callers who stay get the freed slots
// at once (survivor throughput and slot utilisation) and that no slot goes
// to a caller that has already given up, or is lost.

// stormShape is the benchmark's storm.
var stormShape = stormConfig{
	runners:  4,
	slots:    2,
	callers:  128,
	hold:     2 * time.Millisecond,
	patience: time.Millisecond,
}

type stormConfig struct {
	runners, slots int
	callers        int           // goroutines calling at once
	hold           time.Duration // a served call holds its slot this long
	patience       time.Duration // each call's ctx deadline
}

func (c stormConfig) capacity() int { return c.runners * c.slots }

// stormStats are the storm's counters, shared by its callers.
type stormStats struct {
	ok       atomic.Int64 // served with a live ctx and done its work
	timedOut atomic.Int64 // gave up waiting
	late     atomic.Int64 // handed a slot, but its ctx was already done when fn began
	other    atomic.Int64 // any other error: a bug
	held     atomic.Int64 // ns of slot time spent on work (the ok calls' holds)
}

var errLate = errors.New("bench: fn started after its caller's ctx was done")

// stormWorker makes calls until next reports false. A call whose ctx is
// already done when fn starts returns at once, as a well-behaved fn would, and
// counts as late.
func stormWorker(p pool, c stormConfig, next func() bool, st *stormStats) {
	fn := func(ctx context.Context) error {
		if ctx.Err() != nil {
			st.late.Add(1)
			return errLate
		}
		t0 := mono()
		time.Sleep(c.hold)
		st.held.Add(mono() - t0)
		return nil
	}
	for next() {
		ctx, cancel := context.WithTimeout(context.Background(), c.patience)
		err := p.Do(ctx, fn)
		cancel()
		switch {
		case err == nil:
			st.ok.Add(1)
		case errors.Is(err, errLate):
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, flame.ErrCheckoutTimeout):
			st.timedOut.Add(1)
		default:
			st.other.Add(1)
		}
	}
}

// stormReport turns a storm's counters into metrics.
type stormReport struct {
	okPerSec    float64 // survivor throughput
	utilisation float64 // share of slot time spent on work, 0..1
	lateShare   float64 // late grants per served call
	lost        int     // slots that could not be taken after the storm
	other       int64
}

func (st *stormStats) report(c stormConfig, elapsed time.Duration, lost int) stormReport {
	ok, late := st.ok.Load(), st.late.Load()
	r := stormReport{lost: lost, other: st.other.Load()}
	if elapsed > 0 {
		r.okPerSec = float64(ok) / elapsed.Seconds()
		r.utilisation = float64(st.held.Load()) / (float64(c.capacity()) * float64(elapsed))
	}
	if ok+late > 0 {
		r.lateShare = float64(late) / float64(ok+late)
	}
	return r
}

// slotsTakeable reports how many of p's capacity slots can be held at once,
// each waited for at most wait: after a storm, anything short of capacity is
// a lost slot.
func slotsTakeable(p pool, capacity int, wait time.Duration) int {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var got atomic.Int64
	var wg sync.WaitGroup
	in := make(chan struct{}, capacity)
	out := make(chan struct{})
	for range capacity {
		wg.Go(func() {
			_ = p.Do(ctx, func(context.Context) error {
				got.Add(1)
				in <- struct{}{}
				<-out
				return nil
			})
		})
	}
	for range capacity {
		select {
		case <-in:
		case <-ctx.Done():
		}
	}
	close(out)
	wg.Wait()
	return int(got.Load())
}

// BenchmarkTimeoutStorm runs the storm: 128 callers on 4 runners × 2 slots,
// each call holding its slot 2 ms and willing to wait 1 ms. One op is one
// call attempt. Reported: ok/s (survivor throughput; the ideal is capacity /
// hold = 4000/s), util (share of slot time spent on work), late (share of
// grants whose caller had already given up when fn began) and lost-slots
// (capacity that could not be taken afterwards).
func BenchmarkTimeoutStorm(b *testing.B) {
	c := stormShape
	for _, im := range impls {
		b.Run(fmt.Sprintf("impl=%s/callers=%d", im.name, c.callers), func(b *testing.B) {
			p := mustNew(b, im, c.runners, c.slots)
			var st stormStats
			b.SetParallelism(perCPU(c.callers))
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) { stormWorker(p, c, pb.Next, &st) })
			elapsed := time.Since(start)
			b.StopTimer()
			lost := c.capacity() - slotsTakeable(p, c.capacity(), time.Second)
			r := st.report(c, elapsed, lost)
			if r.other > 0 {
				b.Errorf("%d calls failed with an unexpected error", r.other)
			}
			b.ReportMetric(r.okPerSec, "ok/s")
			b.ReportMetric(r.utilisation, "util")
			b.ReportMetric(r.lateShare, "late")
			b.ReportMetric(float64(r.lost), "lost-slots")
		})
	}
}
