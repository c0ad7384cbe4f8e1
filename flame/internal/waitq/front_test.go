package waitq

// Front and PopFront let the tests look at and take the head directly; the
// pool only ever takes the head through FrontLive.

// Front returns the head element, or nil. Requires the lock.
func (q *Queue[T]) Front() *Elem[T] { return q.head }

// PopFront removes and returns the head element, or nil. Requires the lock.
func (q *Queue[T]) PopFront() *Elem[T] {
	e := q.head
	if e != nil {
		q.Remove(e)
	}
	return e
}
