package flame

import (
	"context"
	"fmt"
	"time"
)

// CallOption changes one call. The zero value does nothing. Options apply
// in order: of several options of one kind, the last wins.
type CallOption struct {
	timeout    time.Duration
	hasTimeout bool
	link       bool
	hasLink    bool
}

// WithTimeout bounds the call: the checkout wait gets a budget of d and the
// execution gets a fresh d, as in FLAME. Each starts when it begins (never
// more than a millisecond earlier, however busy the machine). Zero means the defaults (and undoes
// an earlier WithTimeout); Infinity removes the limit; a negative d makes
// the call fail with an error matching ErrInvalidConfig.
func WithTimeout(d time.Duration) CallOption {
	return CallOption{timeout: d, hasTimeout: true}
}

// WithLink says whether the work follows the caller's ctx (the default,
// true). Unlinked work keeps running, and keeps its slot, after the caller's
// ctx is done.
func WithLink(link bool) CallOption { return CallOption{link: link, hasLink: true} }

// errNegativeTimeout matches ErrInvalidConfig: a negative WithTimeout is bad
// input, like a negative Config duration.
var errNegativeTimeout = fmt.Errorf("%w: WithTimeout: negative duration", ErrInvalidConfig)

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
			// An if chain rather than a switch: mutation testing sees the
			// coverage of statements, and a case's condition is none.
			if op.timeout < 0 {
				return o, errNegativeTimeout
			}
			if op.timeout == 0 {
				o.wait, o.exec = wait, exec
			} else {
				o.wait, o.exec = op.timeout, op.timeout
			}
		}
		if op.hasLink {
			o.link = op.link
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
