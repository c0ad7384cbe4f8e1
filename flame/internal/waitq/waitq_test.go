package waitq

import (
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// elems returns n unqueued elements valued 1..n.
func elems(n int) []*Elem[int] {
	es := make([]*Elem[int], n)
	for i := range es {
		es[i] = &Elem[int]{Value: i + 1}
	}
	return es
}

// pushAll pushes es in order, under the lock.
func pushAll(q *Queue[int], es ...*Elem[int]) {
	q.Lock()
	defer q.Unlock()
	for _, e := range es {
		q.PushBack(e)
	}
}

// contents returns the queued values head to tail, after checking that the
// links agree in both directions, that every element is marked queued and
// that Len is exact.
func contents(t *testing.T, q *Queue[int]) []int {
	t.Helper()
	q.Lock()
	defer q.Unlock()
	var fwd []int
	var prev *Elem[int]
	for e := q.head; e != nil; e = e.next {
		require.Same(t, prev, e.prev, "element %d: prev link broken", e.Value)
		require.True(t, e.Queued(), "element %d is linked but not marked queued", e.Value)
		fwd = append(fwd, e.Value)
		prev = e
	}
	require.Same(t, prev, q.tail, "tail is %v, want the last element %v", q.tail, prev)
	var back []int
	for e := q.tail; e != nil; e = e.prev {
		back = append(back, e.Value)
	}
	slices.Reverse(back)
	// Both walks are nil or both are not (the tail check above): Equal
	// compares them as slices.Equal would.
	require.Equal(t, fwd, back, "forward walk %v, backward walk %v", fwd, back)
	require.Equal(t, len(fwd), q.Len(), "Len() = %d, but %d elements are linked", q.Len(), len(fwd))
	if fwd == nil {
		fwd = []int{}
	}
	return fwd
}

func wantContents(t *testing.T, q *Queue[int], want ...int) {
	t.Helper()
	if want == nil {
		want = []int{}
	}
	// Neither is nil, so Equal compares them as slices.Equal would.
	require.Equal(t, want, contents(t, q), "queue")
}

func TestZeroQueueIsEmptyAndUsable(t *testing.T) {
	var q Queue[int]
	require.Equal(t, 0, q.Len(), "Len()")
	q.Lock()
	require.Nil(t, q.Front(), "empty queue returned an element")
	require.Nil(t, q.PopFront(), "empty queue returned an element")
	called := false
	front := q.FrontLive(func(int) bool { called = true; return true }, func(int) { called = true })
	require.Nil(t, front, "FrontLive on empty queue = %v, callbacks called: %v", front, called)
	require.False(t, called, "FrontLive on empty queue = %v, callbacks called: %v", front, called)
	q.Unlock()
	e := &Elem[int]{Value: 7}
	require.False(t, e.Queued(), "zero Elem reports queued")
	pushAll(&q, e)
	wantContents(t, &q, 7)
}

func TestPushBackPopFrontIsFIFOAndLenExact(t *testing.T) {
	var q Queue[int]
	es := elems(5)
	for i, e := range es {
		pushAll(&q, e)
		require.Equal(t, i+1, q.Len(), "after %d pushes Len() = %d", i+1, q.Len())
	}
	wantContents(t, &q, 1, 2, 3, 4, 5)
	q.Lock()
	require.Same(t, es[0], q.Front(), "Front is not the first element pushed")
	q.Unlock()
	for i := range es {
		q.Lock()
		e := q.PopFront()
		q.Unlock()
		require.Same(t, es[i], e, "pop %d returned %v, want element %d", i, e, es[i].Value)
		require.False(t, e.Queued(), "popped element %d still marked queued", e.Value)
		require.Equal(t, len(es)-i-1, q.Len(), "after %d pops Len() = %d", i+1, q.Len())
		contents(t, &q)
	}
	q.Lock()
	require.Nil(t, q.PopFront(), "PopFront on drained queue")
	q.Unlock()
}

func TestRemoveMiddleHeadAndTailKeepLinksIntact(t *testing.T) {
	var q Queue[int]
	es := elems(5)
	pushAll(&q, es...)

	remove := func(e *Elem[int]) {
		t.Helper()
		q.Lock()
		ok := q.Remove(e)
		q.Unlock()
		require.True(t, ok, "Remove(%d) = false for a queued element", e.Value)
		require.False(t, e.Queued(), "removed element %d still linked or marked queued", e.Value)
		require.Nil(t, e.prev, "removed element %d still linked or marked queued", e.Value)
		require.Nil(t, e.next, "removed element %d still linked or marked queued", e.Value)
	}

	remove(es[2]) // middle
	wantContents(t, &q, 1, 2, 4, 5)
	remove(es[0]) // head
	wantContents(t, &q, 2, 4, 5)
	q.Lock()
	require.Same(t, es[1], q.Front(), "Front after removing the head is not the second element")
	q.Unlock()
	remove(es[4]) // tail
	wantContents(t, &q, 2, 4)

	// The tail pointer moved back: a new push lands after 4.
	e6 := &Elem[int]{Value: 6}
	pushAll(&q, e6)
	wantContents(t, &q, 2, 4, 6)

	remove(es[1])
	remove(es[3])
	remove(e6)
	wantContents(t, &q)
	require.Nil(t, q.head, "empty queue keeps a head or tail pointer")
	require.Nil(t, q.tail, "empty queue keeps a head or tail pointer")
	// And it is usable again.
	pushAll(&q, es[0], es[2])
	wantContents(t, &q, 1, 3)
}

func TestRemoveTwiceIsANoOp(t *testing.T) {
	var q Queue[int]
	es := elems(3)
	pushAll(&q, es...)
	q.Lock()
	first := q.Remove(es[1])
	second := q.Remove(es[1])
	q.Unlock()
	require.True(t, first, "Remove twice = %v, %v; want true, false", first, second)
	require.False(t, second, "Remove twice = %v, %v; want true, false", first, second)
	wantContents(t, &q, 1, 3)

	// An element never pushed is not queued either.
	q.Lock()
	stray := q.Remove(&Elem[int]{Value: 9})
	q.Unlock()
	require.False(t, stray, "Remove of an element never pushed = true")
	wantContents(t, &q, 1, 3)
}

func TestRemovedElemCanBePushedAgain(t *testing.T) {
	var q Queue[int]
	es := elems(3)
	pushAll(&q, es...)
	q.Lock()
	q.Remove(es[0])
	q.Unlock()
	pushAll(&q, es[0])
	wantContents(t, &q, 2, 3, 1)
}

func TestPushBackOfQueuedElemPanics(t *testing.T) {
	var q Queue[int]
	e := &Elem[int]{Value: 1}
	pushAll(&q, e)
	defer func() {
		require.NotNil(t, recover(), "pushing a queued element did not panic")
		wantContents(t, &q, 1) // the queue is untouched
	}()
	q.PushBack(e) // lock not needed for a single goroutine; the panic comes first
}

func TestFrontLiveSkipsEveryDeadElemAndReportsEach(t *testing.T) {
	var q Queue[int]
	es := elems(6)
	pushAll(&q, es...)
	var dead, asked []int
	q.Lock()
	e := q.FrontLive(
		func(v int) bool { asked = append(asked, v); return v >= 5 },
		func(v int) { dead = append(dead, v) },
	)
	q.Unlock()
	require.Same(t, es[4], e, "FrontLive returned %v, want element 5", e)
	require.True(t, e.Queued(), "the live element FrontLive returned was removed")
	require.Equal(t, []int{1, 2, 3, 4}, dead, "dead called for")
	require.Equal(t, []int{1, 2, 3, 4, 5}, asked, "live asked about (it must stop at the first live element)")
	wantContents(t, &q, 5, 6)
}

func TestFrontLiveAllDeadEmptiesQueue(t *testing.T) {
	var q Queue[int]
	pushAll(&q, elems(4)...)
	var dead []int
	q.Lock()
	e := q.FrontLive(func(int) bool { return false }, func(v int) { dead = append(dead, v) })
	q.Unlock()
	require.Nil(t, e, "FrontLive with no live element")
	require.Equal(t, []int{1, 2, 3, 4}, dead, "dead called for")
	wantContents(t, &q)
	pushAll(&q, &Elem[int]{Value: 9})
	wantContents(t, &q, 9)
}

func TestFrontLiveWithLiveHeadRemovesNothing(t *testing.T) {
	var q Queue[int]
	es := elems(3)
	pushAll(&q, es...)
	q.Lock()
	e := q.FrontLive(func(int) bool { return true }, func(v int) { assert.Failf(t, "dead called for a live head", "dead(%d) called for a live head", v) })
	q.Unlock()
	require.Same(t, es[0], e, "FrontLive = %v, want the head", e)
	wantContents(t, &q, 1, 2, 3)
}

func TestFrontLiveAcceptsNilDead(t *testing.T) {
	var q Queue[int]
	es := elems(3)
	pushAll(&q, es...)
	q.Lock()
	e := q.FrontLive(func(v int) bool { return v == 3 }, nil)
	q.Unlock()
	require.Same(t, es[2], e, "FrontLive = %v, want element 3", e)
	wantContents(t, &q, 3)
}

func TestEachVisitsInOrderAndAllowsRemovingCurrent(t *testing.T) {
	var q Queue[int]
	pushAll(&q, elems(6)...)
	var seen []int
	q.Lock()
	q.Each(func(e *Elem[int]) {
		seen = append(seen, e.Value)
		if e.Value%2 == 0 {
			q.Remove(e)
		}
	})
	q.Unlock()
	require.Equal(t, []int{1, 2, 3, 4, 5, 6}, seen, "Each visited")
	wantContents(t, &q, 1, 3, 5)
}

// Len is read without the lock by the pool's hot path: it must be safe (an
// atomic) while other goroutines push and remove under the lock, and exact
// once they are done.
func TestLenIsSafeWithoutLockAndExactAfterwards(t *testing.T) {
	var q Queue[int]
	const workers, rounds = 8, 500
	var wg sync.WaitGroup
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() { // lock-free reader
		defer close(readerDone)
		for {
			select {
			case <-stop:
				return
			default:
				n := q.Len()
				if !assert.GreaterOrEqual(t, n, 0, "Len() = %d out of range", n) ||
					!assert.LessOrEqual(t, n, workers*2, "Len() = %d out of range", n) {
					return
				}
			}
		}
	}()
	for w := range workers {
		wg.Go(func() {
			a, b := &Elem[int]{Value: w}, &Elem[int]{Value: -w}
			for range rounds {
				q.Lock()
				q.PushBack(a)
				q.PushBack(b)
				q.Unlock()
				q.Lock()
				q.Remove(b)
				q.Remove(a)
				q.Unlock()
			}
			q.Lock()
			q.PushBack(a) // each worker leaves one element
			q.Unlock()
		})
	}
	wg.Wait()
	close(stop)
	<-readerDone
	require.Len(t, contents(t, &q), workers, "elements left")
}
