// Package peers holds the baseline pools that goflame's benchmarks compare against.
//
// Every baseline offers the same narrow operation as a goflame checkout: take one slot on
// some runner, give it back. They differ only in how they coordinate:
//
//   - [NewActor] is a Go port of Elixir FLAME's design (FLAME.Pool): one goroutine owns all
//     state and callers talk to it over channels, as FLAME's callers talk to its GenServer.
//     [NewActorGrowing] adds FLAME's one-boot-at-a-time growth.
//   - [NewSemaphore] is golang.org/x/sync/semaphore over the total capacity: the floor for
//     "take one of N slots", with no notion of runners.
//   - [NewPuddle] is github.com/jackc/puddle/v2 with one resource per slot.
//   - [NewMutex] is a sync.Mutex-guarded least-loaded pool with a FIFO wait list and direct
//     handoff: the obvious hand-written design.
//
// The baselines are meant to be fair: each avoids allocation on the free path where its
// design allows, and each gets cancellation right (a slot handed to a caller that has just
// given up goes back to the pool). They are not general-purpose pools: there is no
// growth beyond what is described, no idle shutdown and no stats.
package peers

import (
	"context"
	"errors"
	"fmt"
)

// ErrClosed is returned by Acquire once the pool has been closed.
var ErrClosed = errors.New("peers: pool closed")

// Pool is what every benchmarked implementation offers: take one slot on some runner,
// give it back. Acquire blocks until a slot is free or ctx is done.
type Pool interface {
	// Acquire takes one slot. If ctx is already done it returns ctx.Err() without taking
	// a slot; if ctx ends while waiting it returns ctx.Err() and no slot is kept. After
	// Close it returns ErrClosed (except where an implementation documents otherwise).
	Acquire(ctx context.Context) (Slot, error)
	// Release gives back a slot returned by Acquire. Each slot is released exactly once.
	// Release never blocks on other callers, also not after Close.
	Release(Slot)
	// Close stops the pool and every goroutine it started.
	Close()
}

// Slot is one unit of capacity on one runner. It is a small value so that Acquire and
// Release can pass it around without allocating.
type Slot struct {
	// Runner is the index of the runner that holds the slot, from 0. Implementations
	// without runners (semaphore) always report 0.
	Runner int
	// ref is an implementation's private handle for the slot (puddle's *Resource); nil
	// for the others. A pointer stored in an interface does not allocate.
	ref any
}

// handSkipped and handClosed are the values a waiter's channel carries instead of a runner
// index when it is not being given a slot.
const (
	handSkipped = -1 // the waiter's ctx was done when its turn came; it was passed over
	handClosed  = -2 // the pool was closed while the waiter waited
)

// checkShape panics on a pool shape no benchmark can use. The constructors panic rather
// than return an error because their callers are benchmarks with fixed, literal shapes.
func checkShape(kind string, runners, slotsPerRunner int) {
	if runners < 1 || slotsPerRunner < 1 {
		panic(fmt.Sprintf("peers: %s pool needs runners >= 1 and slotsPerRunner >= 1, got %d and %d",
			kind, runners, slotsPerRunner))
	}
}
