package peers

// waitLinks are the links a waiter embeds to sit in a waitList. Intrusive links make
// enqueueing and removing a waiter allocation-free and O(1), so a waiter whose ctx ends
// can take itself out of the middle of the queue.
type waitLinks[W any] struct {
	prev, next *W
	queued     bool
}

// waitNode is a pointer to a waiter type that embeds waitLinks.
type waitNode[W any] interface {
	*W
	links() *waitLinks[W]
}

// waitList is a FIFO list of waiters. It is not safe for concurrent use: its owner (the
// actor goroutine, or whoever holds the mutex pool's lock) serialises access.
type waitList[W any, P waitNode[W]] struct {
	head, tail *W
	n          int
}

// len reports how many waiters are queued.
func (l *waitList[W, P]) len() int { return l.n }

// pushBack appends w, which must not be queued already.
func (l *waitList[W, P]) pushBack(w P) {
	lk := w.links()
	lk.prev, lk.next, lk.queued = l.tail, nil, true
	if l.tail != nil {
		P(l.tail).links().next = (*W)(w)
	} else {
		l.head = (*W)(w)
	}
	l.tail = (*W)(w)
	l.n++
}

// popFront removes and returns the oldest waiter, or nil if the list is empty.
func (l *waitList[W, P]) popFront() P {
	if l.head == nil {
		return nil
	}
	w := P(l.head)
	l.remove(w)
	return w
}

// remove takes w out of the list and reports whether it was queued.
func (l *waitList[W, P]) remove(w P) bool {
	lk := w.links()
	if !lk.queued {
		return false
	}
	if lk.prev != nil {
		P(lk.prev).links().next = lk.next
	} else {
		l.head = lk.next
	}
	if lk.next != nil {
		P(lk.next).links().prev = lk.prev
	} else {
		l.tail = lk.prev
	}
	lk.prev, lk.next, lk.queued = nil, nil, false
	l.n--
	return true
}
