package flame

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/goflame/goflame/flame/internal/scaler"
	"github.com/goflame/goflame/flame/internal/wire"
)

// A runner's state and load share one 64-bit word, so that every decision
// about a slot is a single compare-and-swap:
//
//	bits  0..23  load: slots held
//	bits 24..25  state: active, draining or down (scaler.State)
//	bits 26..63  generation: +1 on every checkout (a handoff included), wraps
//
// "Take a slot only if active and below MaxConcurrency" and "claim for
// shutdown only if active, load 0 and not checked out since the idle
// period began (when its load was 0 too)" are then each one CAS on the
// same word, so the idle reaper can never take a runner that a caller has
// just claimed. The generation doubles as the runner's checkout count
// (Stats.Checkouts): wraps counts its overflows.
const (
	loadBits   = 24
	loadMask   = 1<<loadBits - 1
	stateShift = loadBits
	stateMask  = 3 << stateShift
	genShift   = stateShift + 2
	genOne     = 1 << genShift
	genMask    = 1<<(64-genShift) - 1

	// maxMaxConcurrency is the largest MaxConcurrency the word can count.
	maxMaxConcurrency = loadMask

	stActive   = uint64(scaler.Active) << stateShift
	stDraining = uint64(scaler.Draining) << stateShift
	stDown     = uint64(scaler.Down) << stateShift
)

func wordLoad(w uint64) int         { return int(w & loadMask) }
func wordState(w uint64) uint64     { return w & stateMask }
func withState(w, st uint64) uint64 { return w&^stateMask | st }

// runner is one booted runner. The word is written by every checkout and
// release, so it sits on a cache line of its own with what only a checkout
// touches beside it; the rest is set at boot and read-only after, except
// where noted.
type runner struct {
	_     [64]byte
	word  atomic.Uint64
	wraps atomic.Uint64             // times the generation overflowed; written only then
	block atomic.Pointer[execBlock] // where the next checkouts' contexts come from (see ctxEntry)
	_     [40]byte

	id      uint64
	node    Node
	invoker Invoker // node as an Invoker, or nil: registered calls then run in this process
	local   bool    // node is LocalBackend's: fn runs on the caller's goroutine
	maxMsg  int     // the message size limit for registered calls run in this process
	pool    *Pool
	ctx     context.Context         // cancelled when the runner goes down: fn contexts follow it
	cancel  context.CancelCauseFunc // with ErrRunnerDown (crash) or ErrClosed (Close)

	stopWatch chan struct{} // closed when the pool shuts the runner down on purpose
	stopOnce  sync.Once
}

func newRunner(p *Pool, id uint64, node Node) *runner {
	ctx, cancel := context.WithCancelCause(p.baseCtx)
	r := &runner{id: id, node: node, maxMsg: wire.DefaultMaxPayload, pool: p, ctx: ctx, cancel: cancel, stopWatch: make(chan struct{})}
	r.invoker, _ = node.(Invoker)
	if ln, ok := node.(*localNode); ok {
		r.local, r.maxMsg = true, ln.maxMsg
	}
	return r
}

// Every change of the word is a compare-and-swap made by one of the
// methods below (and the scaler's ClaimIdle, Drain and Kill).

// take checks a slot out of a runner whose word was w (active, below
// MaxConcurrency: the caller checked): load and generation go up by one;
// it returns the new generation. It fails if the word changed meanwhile.
func (r *runner) take(w uint64) (uint64, bool) {
	nw := w + 1 + genOne
	if !r.word.CompareAndSwap(w, nw) {
		return 0, false
	}
	r.checkedOut(w, nw)
	return nw >> genShift, true
}

// handOn passes a slot that is being released straight to a waiter: the
// load stays, the generation (a new checkout) goes up; it returns the new
// generation. It fails, leaving the slot with the releaser, once the
// runner takes no work.
func (r *runner) handOn() (uint64, bool) {
	for {
		w := r.word.Load()
		if wordState(w) != stActive {
			return 0, false
		}
		if nw := w + genOne; r.word.CompareAndSwap(w, nw) {
			r.checkedOut(w, nw)
			return nw >> genShift, true
		}
	}
}

// giveBack returns a slot of a runner whose word was w: the load goes
// down; used, it also stops taking checkouts (a single-use runner that
// served its round). It returns the new word, or false if w changed.
func (r *runner) giveBack(w uint64, used bool) (uint64, bool) {
	nw := w - 1
	if used {
		nw = withState(nw, stDraining)
	}
	return nw, r.word.CompareAndSwap(w, nw)
}

// emptied takes a draining runner whose last slot was just given back
// (the word is now w) Down, and reports whether this call did: the one
// that did reports it to the scaler.
func (r *runner) emptied(w uint64) bool {
	return wordState(w) == stDraining && wordLoad(w) == 0 && r.word.CompareAndSwap(w, withState(w, stDown))
}

// checkedOut records a checkout that took the word from w to nw (the
// generation went up by one): an overflow of the generation is counted.
func (r *runner) checkedOut(w, nw uint64) {
	if nw < w {
		r.wraps.Add(1)
	}
}

// checkouts is how many checkouts the runner has had.
func (r *runner) checkouts() uint64 {
	for {
		n := r.wraps.Load()
		w := r.word.Load()
		if r.wraps.Load() == n {
			return n<<(64-genShift) + w>>genShift
		}
	}
}

// ID implements scaler.Runner.
func (r *runner) ID() uint64 { return r.id }

// Snapshot implements scaler.Runner.
func (r *runner) Snapshot() (int, uint64, scaler.State) {
	w := r.word.Load()
	return wordLoad(w), w >> genShift, scaler.State(wordState(w) >> stateShift)
}

// ClaimIdle implements scaler.Runner.
func (r *runner) ClaimIdle(gen uint64) bool {
	w := gen<<genShift | stActive
	return r.word.CompareAndSwap(w, withState(w, stDown))
}

// Drain implements scaler.Runner.
func (r *runner) Drain() bool {
	for {
		w := r.word.Load()
		if wordState(w) != stActive {
			return false
		}
		if wordLoad(w) == 0 {
			if r.word.CompareAndSwap(w, withState(w, stDown)) {
				return true
			}
			continue
		}
		if r.word.CompareAndSwap(w, withState(w, stDraining)) {
			return false
		}
	}
}

// Kill implements scaler.Runner.
func (r *runner) Kill() {
	for {
		w := r.word.Load()
		if wordState(w) == stDown || r.word.CompareAndSwap(w, withState(w, stDown)) {
			return
		}
	}
}

// stopWatching tells the crash watcher that the pool is stopping the node.
func (r *runner) stopWatching() { r.stopOnce.Do(func() { close(r.stopWatch) }) }
