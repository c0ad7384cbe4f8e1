package peers

import (
	"context"

	"golang.org/x/sync/semaphore"
)

// semaphorePool is a weighted semaphore over the whole capacity: no runners, no
// placement, just "take one of N". It is the floor the other pools are measured against.
type semaphorePool struct {
	sem *semaphore.Weighted // safe for concurrent use
}

// NewSemaphore returns a pool backed by golang.org/x/sync/semaphore.Weighted with
// runners×slotsPerRunner units. Every slot reports Runner 0. Waiters are served in FIFO
// order. Close is a no-op: Weighted cannot be closed, so Acquire after Close still works
// and callers must not be waiting when the pool is dropped. It panics if runners or
// slotsPerRunner is < 1.
func NewSemaphore(runners, slotsPerRunner int) Pool {
	checkShape("semaphore", runners, slotsPerRunner)
	return semaphorePool{sem: semaphore.NewWeighted(int64(runners) * int64(slotsPerRunner))}
}

// Acquire takes one unit; if ctx is done first it returns ctx.Err() and takes nothing.
func (p semaphorePool) Acquire(ctx context.Context) (Slot, error) {
	if err := p.sem.Acquire(ctx, 1); err != nil {
		return Slot{}, err
	}
	return Slot{}, nil
}

// Release gives the unit back.
func (p semaphorePool) Release(Slot) { p.sem.Release(1) }

// Close does nothing; see NewSemaphore.
func (p semaphorePool) Close() {}
