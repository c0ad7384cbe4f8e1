package flame

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrAbandoned is wrapped by the error Close returns when a Backend.Boot or
// Node.Shutdown call was still running after its limit (BootTimeout,
// ShutdownTimeout) had passed: Close returns without waiting for it, and
// names every such call.
var ErrAbandoned = errors.New("flame: Close abandoned calls into the backend that outlived their limits")

// abandonGrace is how long Close waits, past a call's limit, for a backend
// call that is still running before it names it abandoned: long enough for
// a call that honours its ctx to return, and for ProcessBackend to reap a
// runner it has just sent SIGTERM.
const abandonGrace = time.Second

// userCall is one call the pool makes into a backend (Backend.Boot,
// Node.Shutdown) that may outlive its limit. The call runs in a goroutine
// of its own, outside the pool's WaitGroup; the pool waits for it only up
// to its limit, so that Close never hangs on backend code.
type userCall struct {
	what      string // "Backend.Boot of runner 5 (BootTimeout 30s)"
	done      bool   // the call has returned; guarded by userCalls.mu
	abandoned bool   // nobody waits for its result any more; guarded by userCalls.mu
}

// userCalls is the set of backend calls still running.
type userCalls struct {
	mu      sync.Mutex
	running map[*userCall]struct{}
	ended   chan struct{} // closed (and replaced) whenever a call returns
}

func (u *userCalls) start(what string) *userCall {
	c := &userCall{what: what}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.running == nil {
		u.running = make(map[*userCall]struct{})
	}
	u.running[c] = struct{}{}
	return c
}

// end records that c returned, and reports whether somebody still waits for
// its result (false: it was abandoned, and the caller deals with the result
// itself).
func (u *userCalls) end(c *userCall) (waited bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	c.done = true
	delete(u.running, c)
	if u.ended != nil {
		close(u.ended)
		u.ended = nil
	}
	return !c.abandoned
}

// abandon gives up on c unless it has already returned; it reports whether
// it did (false: the result is on its way).
func (u *userCalls) abandon(c *userCall) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if c.done {
		return false
	}
	c.abandoned = true
	return true
}

// still returns the calls still running, and a channel closed when one of
// them returns.
func (u *userCalls) still() ([]string, <-chan struct{}) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.running) == 0 {
		return nil, nil
	}
	names := make([]string, 0, len(u.running))
	for c := range u.running {
		names = append(names, c.what)
	}
	slices.Sort(names)
	if u.ended == nil {
		u.ended = make(chan struct{})
	}
	return names, u.ended
}

// abandonedError waits up to abandonGrace for the backend calls still
// running to return, and names those that do not. Close calls it once
// every goroutine of the pool has exited, so each of them has passed its
// limit: its waiter has given up.
func (p *Pool) abandonedError() error {
	names, ended := p.calls.still()
	if len(names) == 0 {
		return nil
	}
	grace := time.NewTimer(abandonGrace)
	defer grace.Stop()
	for len(names) > 0 {
		select {
		case <-ended:
			names, ended = p.calls.still()
		case <-grace.C:
			return fmt.Errorf("%w: pool %q: %s", ErrAbandoned, p.cfg.Name, strings.Join(names, ", "))
		}
	}
	return nil
}
