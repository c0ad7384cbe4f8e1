package peers

import (
	"context"
	"sync"
)

// mutexWaiter is a caller blocked in the mutex pool. Waiters are reused through a
// sync.Pool; one is only needed when no slot is free.
type mutexWaiter struct {
	// ready receives the handed runner index, handSkipped or handClosed. It is sent on
	// only under mutexPool.mu, at most once per wait, and has capacity 1, so senders
	// never block and a waiter that finds itself dequeued can receive without waiting.
	ready chan int
	// ctx is written by the caller before it enqueues and read by releasers; both under
	// mutexPool.mu.
	ctx  context.Context
	link waitLinks[mutexWaiter] // guarded by mutexPool.mu
}

func (w *mutexWaiter) links() *waitLinks[mutexWaiter] { return &w.link }

// mutexPool is the obvious hand-written pool: one mutex over the per-runner loads and a
// FIFO wait list, with a released slot handed straight to the oldest live waiter.
type mutexPool struct {
	slots   int       // per runner; immutable
	waiters sync.Pool // of *mutexWaiter with an empty ready channel

	mu     sync.Mutex
	loads  []int                               // guarded by mu; per runner: slots held
	queue  waitList[mutexWaiter, *mutexWaiter] // guarded by mu
	closed bool                                // guarded by mu
}

// NewMutex returns a sync.Mutex-guarded pool of runners runners with slotsPerRunner
// slots each. Acquire takes a slot on the least-loaded runner (ties to the lowest index)
// or waits in FIFO order; Release hands the slot to the oldest waiter whose ctx is still
// live, or frees it. A waiter whose ctx ends removes itself, and if it had just been
// handed a slot, releases it again. It panics if runners or slotsPerRunner is < 1.
func NewMutex(runners, slotsPerRunner int) Pool {
	checkShape("mutex", runners, slotsPerRunner)
	p := &mutexPool{slots: slotsPerRunner, loads: make([]int, runners)}
	p.waiters.New = func() any { return &mutexWaiter{ready: make(chan int, 1)} }
	return p
}

// Acquire takes a free slot under the lock, or queues and waits for a handoff.
func (p *mutexPool) Acquire(ctx context.Context) (Slot, error) {
	if err := ctx.Err(); err != nil {
		return Slot{}, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return Slot{}, ErrClosed
	}
	// While anyone waits every slot is taken (releases hand off), so newcomers never
	// barge past the queue.
	if p.queue.len() == 0 {
		if r := p.leastFree(); r >= 0 {
			p.loads[r]++
			p.mu.Unlock()
			return Slot{Runner: r}, nil
		}
	}
	w := p.waiters.Get().(*mutexWaiter)
	w.ctx = ctx
	p.queue.pushBack(w)
	p.mu.Unlock()

	var r int
	select {
	case r = <-w.ready:
	case <-ctx.Done():
		p.mu.Lock()
		if p.queue.remove(w) {
			p.mu.Unlock()
			p.putWaiter(w)
			return Slot{}, ctx.Err()
		}
		p.mu.Unlock()
		// Dequeued by a releaser or Close, which sent under the lock: this cannot block.
		r = <-w.ready
		if r >= 0 {
			// Handed a slot just as we gave up: give it back, never lose it.
			p.Release(Slot{Runner: r})
			r = handSkipped
		}
	}
	p.putWaiter(w)
	switch r {
	case handSkipped:
		return Slot{}, ctx.Err()
	case handClosed:
		return Slot{}, ErrClosed
	}
	return Slot{Runner: r}, nil
}

func (p *mutexPool) putWaiter(w *mutexWaiter) {
	w.ctx = nil
	p.waiters.Put(w)
}

// leastFree returns the least-loaded runner with a free slot (ties to the lowest index),
// or -1. Called with mu held.
func (p *mutexPool) leastFree() int {
	best := -1
	for i, l := range p.loads {
		if l < p.slots && (best < 0 || l < p.loads[best]) {
			best = i
		}
	}
	return best
}

// Release hands the slot to the oldest live waiter, passing over (and waking) every
// waiter whose ctx is already done, or frees it if nobody waits.
func (p *mutexPool) Release(s Slot) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		w := p.queue.popFront()
		if w == nil {
			p.loads[s.Runner]--
			return
		}
		if w.ctx.Err() != nil {
			w.ready <- handSkipped
			continue
		}
		w.ready <- s.Runner // the slot changes hands; the runner's load is unchanged
		return
	}
}

// Close rejects further Acquires and fails every waiting one with ErrClosed. Slots still
// held may be released afterwards. Calling Close again does nothing.
func (p *mutexPool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for w := p.queue.popFront(); w != nil; w = p.queue.popFront() {
		w.ready <- handClosed
	}
}
