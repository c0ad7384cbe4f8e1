// Package clock is a coarse monotonic clock that costs one atomic load to
// read while it is in use.
//
// Reading the time is not free: time.Now makes two clock reads and costs
// more than a whole checkout and release of a pool slot. Execution limits
// need a start time for every call, but not a precise one: a limit of
// seconds does not care about a millisecond. So while calls flow, one
// goroutine refreshes a shared reading every Resolution, and readers take
// that value with one atomic load. The goroutine starts on the first read
// and stops by itself after IdleTicks refreshes nobody read, so an idle
// pool costs no wake-ups. A read while the goroutine is not running takes
// an exact reading (and starts it).
//
// Readings are nanoseconds since the clock's epoch, on the monotonic clock.
// A coarse reading is never ahead of the true time and at most about one
// Resolution (plus scheduling delay) behind it.
package clock

import (
	"sync"
	"sync/atomic"
	"time"
)

const (
	// Resolution is how often the running clock refreshes its reading.
	Resolution = time.Millisecond
	// IdleTicks is how many unread refreshes stop the goroutine.
	IdleTicks = 100
)

// Clock is a coarse clock. Create it with New.
type Clock struct {
	_     [64]byte
	now   atomic.Int64 // last reading; written by the refresher, read by every caller
	on    atomic.Bool  // the refresher runs: now is fresh
	used  atomic.Bool  // read since the last refresh
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
	return &Clock{epoch: time.Now(), spawn: spawn, stop: make(chan struct{})}
}

// Now returns a coarse reading.
func (c *Clock) Now() int64 {
	if !c.used.Load() {
		c.used.Store(true)
	}
	if c.on.Load() {
		return c.now.Load()
	}
	return c.start()
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

func (c *Clock) start() int64 {
	n := c.Exact()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopped && !c.on.Load() {
		c.now.Store(n)
		c.on.Store(true)
		c.spawn(c.refresh)
	}
	return n
}

func (c *Clock) refresh() {
	t := time.NewTicker(Resolution)
	defer t.Stop()
	idle := 0
	for {
		select {
		case <-t.C:
		case <-c.stop:
			c.on.Store(false)
			return
		}
		c.now.Store(c.Exact())
		if c.used.Swap(false) {
			idle = 0
			continue
		}
		if idle++; idle >= IdleTicks {
			c.mu.Lock()
			c.on.Store(false)
			c.mu.Unlock()
			return
		}
	}
}
