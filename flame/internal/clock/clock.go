// Package clock is a coarse monotonic clock that costs one atomic load to
// read while it is in use, and that can tell afterwards how late a reading
// was.
//
// Reading the time is not free: time.Since makes a clock read that costs
// as much as a whole checkout and release of a pool slot. Execution limits
// need a start time for every call, but most calls never look at theirs:
// a fn that returns nil without asking for its ctx's Done or Deadline
// needs none (and checkout budgets one for every wait, though most waits
// end long before their budget). So while calls flow, one goroutine publishes a tick every
// Resolution, and a call takes the current tick (Stamp: one atomic load).
// Only when the call needs its limit does it turn the tick into a start
// time (Start).
//
// The refresher is a goroutine, so when the program's threads are busy
// (CPU-bound calls, the very use case) it runs late: a tick may be 10 to
// 200 ms old when it is read, and a limit started from it would have
// passed before the call began. So every tick learns the reading of the
// tick after it. A call's true start lies between its tick's reading and
// the next tick's (or, if none has come yet, the moment it asks), and
// Start takes the later of its tick's reading and that bound less
// Tolerance: a limit never starts more than Tolerance before the call did,
// however late the refresher ran, and starts on the tick's reading when it
// ran on time.
//
// The goroutine starts on the first read and stops by itself after
// IdleTicks ticks nobody read, so an idle pool costs no wake-ups. A read
// while it is not running takes an exact reading (and starts it).
//
// Readings are nanoseconds since the clock's epoch, on the monotonic clock.
package clock

import (
	"sync"
	"sync/atomic"
	"time"
)

const (
	// Resolution is how often the running clock ticks.
	Resolution = time.Millisecond
	// Tolerance is how much earlier than a call's true start its Start may
	// be. A tick that comes no later than Tolerance after the one before
	// leaves its readers' starts on its reading.
	Tolerance = time.Millisecond
	// IdleTicks is how many unread ticks stop the goroutine.
	IdleTicks = 100
)

// Tick is one reading of the running clock. A call keeps the tick it
// stamped, so that Start can learn when the next one came.
type Tick struct {
	at    int64        // the exact reading when the tick was published
	next  atomic.Int64 // the next tick's reading; 0 until it comes
	final bool         // the refresher stopped after this tick: its reading goes stale
}

// Clock is a coarse clock. Create it with New.
type Clock struct {
	_     [64]byte
	cur   atomic.Pointer[Tick] // the latest tick: written by the refresher, read by every caller
	used  atomic.Bool          // read since the last tick
	_     [48]byte
	epoch time.Time
	spawn func(func())

	mu      sync.Mutex // orders starting and stopping the refresher
	stopped bool       // guarded by mu
	stop    chan struct{}
}

// New returns a clock whose epoch is now. spawn starts the refresher
// goroutine (so that its owner can track it).
func New(spawn func(func())) *Clock {
	c := &Clock{epoch: time.Now(), spawn: spawn, stop: make(chan struct{})}
	c.cur.Store(&Tick{final: true})
	return c
}

// At returns the tick's reading.
func (t *Tick) At() int64 { return t.at }

// Now returns a coarse reading: the latest tick's, which may be stale when
// the refresher runs late.
func (c *Clock) Now() int64 {
	t, exact := c.Stamp()
	if t == nil {
		return exact
	}
	return t.at
}

// Stamp returns the latest tick. When the refresher is not running it
// returns nil and an exact reading instead (and starts the refresher).
func (c *Clock) Stamp() (*Tick, int64) {
	if !c.used.Load() {
		c.used.Store(true)
	}
	if t := c.cur.Load(); !t.final {
		return t, 0
	}
	return nil, c.start()
}

// Start returns a reading for the moment t was stamped: never more than
// Tolerance before that moment, and never before t's reading.
func (c *Clock) Start(t *Tick) int64 {
	upper := t.next.Load() // the stamp was taken before the next tick
	if upper == 0 {
		upper = c.Exact() // or before now, when no tick has come since
	}
	return max(t.at, upper-int64(Tolerance))
}

// Exact returns an exact reading on the same scale as Now.
func (c *Clock) Exact() int64 { return int64(time.Since(c.epoch)) }

// Time converts a reading to a time.Time.
func (c *Clock) Time(n int64) time.Time { return c.epoch.Add(time.Duration(n)) }

// Stop stops the refresher for good and waits for nothing; later reads are
// exact.
func (c *Clock) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopped {
		c.stopped = true
		close(c.stop)
	}
}

// running reports whether the refresher runs (for tests).
func (c *Clock) running() bool { return !c.cur.Load().final }

func (c *Clock) start() int64 {
	n := c.Exact()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopped && c.cur.Load().final {
		c.publish(n, false)
		c.spawn(c.refresh)
	}
	return n
}

// publish makes a new tick with reading n the latest, and tells the one
// before it when it came. Only the refresher (or start, while it is not
// running) calls it.
func (c *Clock) publish(n int64, final bool) {
	prev := c.cur.Load()
	t := &Tick{at: n, final: final}
	c.cur.Store(t)
	prev.next.Store(n)
}

func (c *Clock) refresh() {
	t := time.NewTicker(Resolution)
	defer t.Stop()
	idle := 0
	for {
		select {
		case <-t.C:
		case <-c.stop:
			c.mu.Lock()
			c.publish(c.Exact(), true)
			c.mu.Unlock()
			return
		}
		if c.used.Swap(false) {
			idle = 0
		} else if idle++; idle >= IdleTicks {
			c.mu.Lock()
			c.publish(c.Exact(), true)
			c.mu.Unlock()
			return
		}
		c.publish(c.Exact(), false)
	}
}
