package flame

import (
	"context"
	"errors"
	"time"
)

// CallOption changes one call. The zero value does nothing.
type CallOption struct {
	timeout    time.Duration
	hasTimeout bool
	unlinked   bool
}

// WithTimeout bounds the call: the checkout wait gets a budget of d and the
// execution gets a fresh d, as in FLAME. Zero keeps the default; Infinity
// removes the limit; a negative d makes the call fail.
func WithTimeout(d time.Duration) CallOption {
	return CallOption{timeout: d, hasTimeout: d != 0}
}

// WithLink says whether the work follows the caller's ctx (the default,
// true). Unlinked work keeps running, and keeps its slot, after the caller's
// ctx is done.
func WithLink(link bool) CallOption { return CallOption{unlinked: !link} }

var errNegativeTimeout = errors.New("flame: WithTimeout: negative duration")

// callOpts is the merged effect of a call's options.
type callOpts struct {
	wait time.Duration // checkout wait
	exec time.Duration // execution limit
	link bool
}

// merge applies opts over the defaults for a kind of call.
func merge(opts []CallOption, wait, exec time.Duration) (callOpts, error) {
	o := callOpts{wait: wait, exec: exec, link: true}
	for _, op := range opts {
		if op.hasTimeout {
			if op.timeout < 0 {
				return o, errNegativeTimeout
			}
			o.wait, o.exec = op.timeout, op.timeout
		}
		if op.unlinked {
			o.link = false
		}
	}
	return o, nil
}

type runnerIDKey struct{}

// RunnerID returns, inside fn, the ID of the runner serving the call.
func RunnerID(ctx context.Context) (uint64, bool) {
	id, ok := ctx.Value(runnerIDKey{}).(uint64)
	return id, ok
}
