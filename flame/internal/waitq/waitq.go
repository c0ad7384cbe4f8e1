// Package waitq is the FIFO list of callers waiting for a slot.
//
// It is an intrusive doubly linked list guarded by one mutex: a waiter embeds
// an Elem, so push, pop and removal of a waiter that gave up are O(1) and
// allocate nothing. The length is also kept in an atomic so that the hot
// path (a release with nobody waiting) can skip the lock entirely.
//
// The mutex is exported through Lock and Unlock because the pool must hold it
// across several steps (enqueue, then re-check capacity; pop, then hand over
// a slot). All methods except Len require the lock.
package waitq

import (
	"sync"
	"sync/atomic"
)

// Elem is one waiter's place in a Queue. Embed it in the waiter and set Value
// to the waiter itself. The zero Elem is not queued.
type Elem[T any] struct {
	prev, next *Elem[T]
	queued     bool
	Value      T
}

// Queued reports whether e is in a queue. Guarded by that queue's lock.
func (e *Elem[T]) Queued() bool { return e.queued }

// Queue is a FIFO of elements. The zero Queue is empty and ready to use.
type Queue[T any] struct {
	mu         sync.Mutex
	head, tail *Elem[T] // guarded by mu
	n          atomic.Int64
}

// Lock locks the queue.
func (q *Queue[T]) Lock() { q.mu.Lock() }

// Unlock unlocks the queue.
func (q *Queue[T]) Unlock() { q.mu.Unlock() }

// Len is the number of queued elements. It needs no lock: it is an atomic
// read, exact while the lock is held and a hint otherwise.
func (q *Queue[T]) Len() int { return int(q.n.Load()) }

// PushBack appends e. e must not be queued. Requires the lock.
func (q *Queue[T]) PushBack(e *Elem[T]) {
	if e.queued {
		panic("waitq: element pushed twice")
	}
	e.queued = true
	e.prev, e.next = q.tail, nil
	if q.tail != nil {
		q.tail.next = e
	} else {
		q.head = e
	}
	q.tail = e
	q.n.Add(1)
}

// Remove takes e out of the queue and reports whether it was queued; removing
// an element that is not queued does nothing. Requires the lock.
func (q *Queue[T]) Remove(e *Elem[T]) bool {
	if !e.queued {
		return false
	}
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		q.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		q.tail = e.prev
	}
	e.prev, e.next, e.queued = nil, nil, false
	q.n.Add(-1)
	return true
}

// FrontLive removes elements from the head until it finds one for which live
// returns true, and returns that one still queued (it is not removed), or nil
// when the queue runs empty. dead is called for each element removed, so that
// every expired waiter is skipped, never just the first. Requires the lock.
func (q *Queue[T]) FrontLive(live func(T) bool, dead func(T)) *Elem[T] {
	for e := q.head; e != nil; e = q.head {
		if live(e.Value) {
			return e
		}
		q.Remove(e)
		if dead != nil {
			dead(e.Value)
		}
	}
	return nil
}

// Each calls f on every element from head to tail; f may remove the element
// it is given. Requires the lock.
func (q *Queue[T]) Each(f func(*Elem[T])) {
	for e := q.head; e != nil; {
		next := e.next
		f(e)
		e = next
	}
}
