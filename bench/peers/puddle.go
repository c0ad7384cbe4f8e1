package peers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/jackc/puddle/v2"
)

// puddlePool is github.com/jackc/puddle/v2 with one resource per slot. Each resource's
// value is the index of the runner it belongs to.
type puddlePool struct {
	pool *puddle.Pool[int] // safe for concurrent use
}

// NewPuddle returns a puddle-backed pool of runners×slotsPerRunner resources, all created
// up front so no Acquire pays for construction; resource k belongs to runner
// k/slotsPerRunner. Puddle keeps idle resources on a stack, so Runner follows recency,
// not load. Close blocks until every acquired slot has been released. It panics if
// runners or slotsPerRunner is < 1, or the capacity does not fit puddle's int32 size.
func NewPuddle(runners, slotsPerRunner int) Pool {
	checkShape("puddle", runners, slotsPerRunner)
	total := int64(runners) * int64(slotsPerRunner)
	if total > math.MaxInt32 {
		panic(fmt.Sprintf("peers: puddle pool capacity %d exceeds int32", total))
	}
	var made atomic.Int64 // resources constructed so far
	p, err := puddle.NewPool(&puddle.Config[int]{
		Constructor: func(context.Context) (int, error) {
			return int((made.Add(1) - 1) / int64(slotsPerRunner)), nil
		},
		Destructor: func(int) {},
		MaxSize:    int32(total),
	})
	if err != nil {
		panic(fmt.Sprintf("peers: puddle.NewPool: %v", err))
	}
	for range total {
		if err := p.CreateResource(context.Background()); err != nil {
			panic(fmt.Sprintf("peers: puddle CreateResource: %v", err))
		}
	}
	return puddlePool{pool: p}
}

// Acquire takes an idle resource, waiting on puddle's semaphore if none is idle.
func (p puddlePool) Acquire(ctx context.Context) (Slot, error) {
	res, err := p.pool.Acquire(ctx)
	if err != nil {
		if errors.Is(err, puddle.ErrClosedPool) {
			return Slot{}, ErrClosed
		}
		return Slot{}, err
	}
	return Slot{Runner: res.Value(), ref: res}, nil
}

// Release puts the resource back.
func (p puddlePool) Release(s Slot) { s.ref.(*puddle.Resource[int]).Release() }

// Close closes the puddle pool; it blocks until every held slot has been released.
func (p puddlePool) Close() { p.pool.Close() }
