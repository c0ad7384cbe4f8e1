package peers

import (
	"context"
	"sync"
)

// actorMailbox is the request channel's buffer: where FLAME's (unbounded) process mailbox
// would be. It is large enough that callers almost never block on a send while the
// actor is busy, without pretending to be unbounded.
const actorMailbox = 1024

type actorOp uint8

const (
	opCheckout actorOp = iota // FLAME's {:checkout, deadline} call
	opRelease                 // FLAME's {:cancel, ref, pid, :ok} checkin
	opCancel                  // FLAME's {:cancel, ref, pid, :timeout}: the caller gave up
	opUp                      // a boot finished: FLAME's {ref, {:ok, pid}} from the boot task
	opClose                   // stop the actor
)

// actorMsg is one message to the actor. It is passed by value, so sending it allocates
// nothing.
type actorMsg struct {
	op     actorOp
	runner int          // opRelease: the runner whose slot comes back
	w      *actorWaiter // opCheckout, opCancel: the caller
}

// actorWaiter is one caller's checkout, the Go stand-in for FLAME's `from` plus its
// WaitingState. Waiters are reused through a sync.Pool so the free path allocates nothing.
type actorWaiter struct {
	// ctx is written by the caller before it sends opCheckout and read by the actor
	// while the waiter is queued (FLAME's deadline and Process.alive? check).
	ctx context.Context
	// reply carries the chosen runner index from the actor to the caller. Its capacity
	// of 1 means the actor never blocks on a caller; the actor sends at most once per
	// checkout, so the buffer is always empty when a checkout starts.
	reply chan int

	// Owned by the actor goroutine.
	link   waitLinks[actorWaiter]
	served bool // a runner was sent on reply for the current checkout
	runner int  // that runner, valid while served
}

func (w *actorWaiter) links() *waitLinks[actorWaiter] { return &w.link }

// actor is a faithful Go port of the checkout part of FLAME.Pool: one goroutine owns all
// state, and callers talk to it over one channel. Callers that give up send a cancel, as
// FLAME's callers do, and the actor either drops them from the queue or checks their slot
// back in; goroutines cannot be monitored, so a caller that never releases leaks its slot
// (FLAME's monitors would reclaim it).
type actor struct {
	reqs      chan actorMsg // the mailbox; never closed
	done      chan struct{} // closed when the actor goroutine has returned
	closeOnce sync.Once
	waiters   sync.Pool // of *actorWaiter with an empty reply channel

	// boot starts a runner (growth mode only); it runs in its own goroutine with
	// bootCtx, which Close cancels. boots counts those goroutines so Close can wait.
	boot       func(context.Context)
	bootCtx    context.Context
	bootCancel context.CancelFunc
	boots      sync.WaitGroup

	// Owned by the actor goroutine.
	slots   int   // max_concurrency
	max     int   // most runners booted + booting
	loads   []int // per booted runner: slots held; index = Runner
	pending int   // boots in flight (FLAME's pending_runners)
	queue   waitList[actorWaiter, *actorWaiter]
}

// NewActor returns a FLAME-style actor pool with runners runners, all up from the start,
// each with slotsPerRunner slots. Slots go to the least-loaded runner, ties to the lowest
// index; when none is free, callers queue in FIFO order and a released slot goes to the
// oldest waiter whose ctx is still live. It panics if runners or slotsPerRunner is < 1.
func NewActor(runners, slotsPerRunner int) Pool {
	checkShape("actor", runners, slotsPerRunner)
	return startActor(runners, runners, slotsPerRunner, nil)
}

// NewActorGrowing returns an actor pool that starts with no runners and grows up to max
// runners the way FLAME.Pool does: a checkout that finds every booted runner full (or
// none at all) starts one boot, but only if no boot is pending; when a boot completes,
// the new runner serves up to slotsPerRunner waiters and, if callers still wait and there
// is room, the next boot starts. So runners come up strictly one at a time.
//
// boot is run in its own goroutine for every new runner and the runner is up when it
// returns; boots cannot fail. Its ctx is cancelled by Close, which waits for every boot
// to return. It panics if max or slotsPerRunner is < 1 or boot is nil.
func NewActorGrowing(max, slotsPerRunner int, boot func(ctx context.Context)) Pool {
	checkShape("growing actor", max, slotsPerRunner)
	if boot == nil {
		panic("peers: growing actor pool needs a boot func")
	}
	return startActor(0, max, slotsPerRunner, boot)
}

func startActor(runners, max, slots int, boot func(context.Context)) *actor {
	a := &actor{
		reqs:  make(chan actorMsg, actorMailbox),
		done:  make(chan struct{}),
		boot:  boot,
		slots: slots,
		max:   max,
		loads: make([]int, runners, max),
	}
	a.waiters.New = func() any { return &actorWaiter{reply: make(chan int, 1)} }
	a.bootCtx, a.bootCancel = context.WithCancel(context.Background())
	go a.run()
	return a
}

// Acquire sends a checkout to the actor and waits for its reply, like FLAME's
// caller_checkout!. If ctx ends first it sends a cancel and returns ctx.Err() at once;
// the actor then drops the queued checkout or, if it had already replied, takes the slot
// back.
func (a *actor) Acquire(ctx context.Context) (Slot, error) {
	if err := ctx.Err(); err != nil {
		return Slot{}, err
	}
	w := a.waiters.Get().(*actorWaiter)
	w.ctx = ctx
	// Selecting on done plays the part of FLAME's monitor on the pool process.
	select {
	case a.reqs <- actorMsg{op: opCheckout, w: w}:
	case <-a.done:
		return Slot{}, ErrClosed
	}
	select {
	case r := <-w.reply:
		w.ctx = nil
		a.waiters.Put(w)
		return Slot{Runner: r}, nil
	case <-ctx.Done():
		// w stays with the actor: it may still hold a reply, so it is never reused.
		select {
		case a.reqs <- actorMsg{op: opCancel, w: w}:
		case <-a.done:
		}
		return Slot{}, ctx.Err()
	case <-a.done:
		// w may hold a reply the closed actor will never account for: drop it too.
		return Slot{}, ErrClosed
	}
}

// Release sends the slot back to the actor without waiting, as FLAME's checkin is a
// plain message send.
func (a *actor) Release(s Slot) {
	select {
	case a.reqs <- actorMsg{op: opRelease, runner: s.Runner}:
	case <-a.done:
	}
}

// Close stops the actor: waiting callers get ErrClosed. It then cancels and waits for any
// boot in flight. Calling Close again does nothing.
func (a *actor) Close() {
	a.closeOnce.Do(func() {
		select {
		case a.reqs <- actorMsg{op: opClose}:
			<-a.done
		case <-a.done:
		}
		a.bootCancel()
		a.boots.Wait()
	})
}

// run is the actor goroutine: FLAME's GenServer loop.
func (a *actor) run() {
	defer close(a.done)
	for {
		m := <-a.reqs
		switch m.op {
		case opCheckout:
			m.w.served = false
			a.checkout(m.w)
		case opRelease:
			a.checkin(m.runner)
		case opCancel:
			a.cancel(m.w)
		case opUp:
			a.runnerUp()
		case opClose:
			return
		}
	}
}

// checkout ports checkout_runner: serve w on the least-loaded runner, or queue it, booting
// a runner first if every booted runner is full and no boot is pending.
func (a *actor) checkout(w *actorWaiter) {
	r := a.leastLoaded()
	count := len(a.loads) + a.pending
	switch {
	case count == 0 || r < 0 || (a.loads[r] == a.slots && count < a.max):
		if a.pending == 0 {
			a.startBoot()
		}
		a.queue.pushBack(w)
	case a.loads[r] < a.slots:
		a.serve(w, r)
	default:
		a.queue.pushBack(w)
	}
}

// leastLoaded ports min_runner: the booted runner with the lowest load, ties to the lowest
// index, or -1 when no runner is booted.
func (a *actor) leastLoaded() int {
	best := -1
	for i, l := range a.loads {
		if best < 0 || l < a.loads[best] {
			best = i
		}
	}
	return best
}

// serve ports reply_runner_checkout.
func (a *actor) serve(w *actorWaiter, r int) {
	a.loads[r]++
	w.served, w.runner = true, r
	w.reply <- r // never blocks: capacity 1, one reply per checkout
}

// checkin ports drop_caller: the slot comes back and the next live waiter checks out.
func (a *actor) checkin(r int) {
	a.loads[r]--
	if w := a.popLive(); w != nil {
		a.checkout(w)
	}
}

// cancel ports checkin_runner for a caller that timed out: drop it if it still waits,
// or check in the slot it was sent but will never use.
func (a *actor) cancel(w *actorWaiter) {
	if a.queue.remove(w) {
		return
	}
	if w.served {
		w.served = false
		a.checkin(w.runner)
	}
	// Otherwise popLive already passed it over.
}

// popLive ports pop_next_waiting_caller: the oldest waiter whose ctx is still live.
// Waiters passed over get no reply; their callers are already past ctx.Done.
func (a *actor) popLive() *actorWaiter {
	for {
		w := a.queue.popFront()
		if w == nil || w.ctx.Err() == nil {
			return w
		}
	}
}

// startBoot ports async_boot_runner.
func (a *actor) startBoot() {
	a.pending++
	a.boots.Add(1)
	go func() {
		defer a.boots.Done()
		a.boot(a.bootCtx)
		select {
		case a.reqs <- actorMsg{op: opUp}:
		case <-a.done:
		}
	}()
}

// runnerUp ports handle_runner_async_up: the new runner serves up to slots waiters, and
// if demand remains and there is room, the next boot starts.
func (a *actor) runnerUp() {
	a.pending--
	a.loads = append(a.loads, 0)
	r := len(a.loads) - 1
	for range a.slots {
		w := a.popLive()
		if w == nil {
			break
		}
		a.serve(w, r)
	}
	// has_unmet_servicable_demand?
	if a.queue.len() > 0 && len(a.loads)+a.pending < a.max {
		a.startBoot()
	}
}
