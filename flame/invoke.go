package flame

import (
	"context"
	"errors"
	"fmt"

	"github.com/goflame/goflame/flame/internal/wire"
)

// Invoker is implemented by nodes that run registered functions
// themselves, typically in another process or on another machine. The pool
// sends every registered call (Func.Call, Cast, Place) for such a node to
// Invoke; plain closures (Pool.Call, Cast, PlaceChild) still go to
// Node.Exec, which a node that cannot run them answers with
// ErrNotPortable. A node that is not an Invoker runs registered functions
// in the caller's process, arguments and result still going through the
// codec, as LocalBackend's do.
//
// ctx is the call's context: its deadline is the call's execution limit,
// it is cancelled when the caller gives up (if linked), the child is
// stopped, the pool closes or the runner goes down, and RunnerID works on
// it. Send the time left to the deadline, not the deadline itself (clocks
// of two hosts differ), and hook cancellation with AfterCancel.
//
// Invoke returns the function's encoded result, which becomes the
// caller's (a []byte result may keep its memory): the Invoker must not
// reuse it. call.Args may be read only until Invoke returns (its buffer is
// reused after). Invoke returns the function's error as a *FuncError
// (so that code handling errors behaves the same on every backend), or a
// *PanicError if it panicked; or an error of the node's own. An error that
// is not a *FuncError and matches ErrRunnerDown says the runner is gone:
// the pool takes it out of checkout before the caller sees the error, as
// it does when the node's Done closes.
type Invoker interface {
	Invoke(ctx context.Context, call Invocation) ([]byte, error)
}

// Invocation is one call of a registered function, as an Invoker gets it.
type Invocation struct {
	Func string // the id the function was registered under
	Kind Kind   // how the caller placed the call
	Args []byte // the encoded arguments
}

// Kind says how a registered call was placed.
type Kind uint8

// Kinds of registered calls.
const (
	KindCall  Kind = iota // Func.Call: the caller waits for the result
	KindCast              // Func.Cast: nobody waits; errors are logged
	KindPlace             // Func.Place: a child, which holds its slot until it returns
)

func (k Kind) String() string {
	switch k {
	case KindCall:
		return "call"
	case KindCast:
		return "cast"
	case KindPlace:
		return "place"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// AfterCancel arranges for f to run in its own goroutine once ctx is
// cancelled, and returns a function that stops that, as context.AfterFunc
// does. On the ctx the pool hands Node.Exec and Invoker.Invoke it does so
// without arming a timer for the execution limit: f runs when the call is
// cancelled (caller, Child.Stop, Close, runner down), and may run late, or
// not at all, for the limit alone. An Invoker that sends the time left to
// where the call runs, and has it enforced there, saves a timer per call
// (which on a small machine can wake a thread, a good part of a fast remote
// call's round trip). On any other ctx it is context.AfterFunc.
func AfterCancel(ctx context.Context, f func()) (stop func() bool) {
	if c, ok := ctx.(*execCtx); ok {
		return c.onCancel(f)
	}
	return context.AfterFunc(ctx, f)
}

// invocation is a registered call on its way through the pool.
type invocation struct {
	Invocation
	reg     *registered // the function, to run it in this process
	res     []byte      // the encoded result, once the call succeeded
	release func()      // gives Args' buffer back, once nothing refers to it; nil: nothing to give
}

// invoke runs a registered call on r: through Invoke when r's node is an
// Invoker, else here, through the codec.
func (p *Pool) invoke(c *execCtx, r *runner, inv *invocation) error {
	if r.invoker == nil {
		res, err := inv.runHere(c, r.maxMsg)
		if inv.release != nil && !inv.reg.keepsArgs { // else the function may keep the arguments' memory
			inv.release()
		}
		inv.release = nil
		inv.res = res
		return err
	}
	res, err := r.invoker.Invoke(c, inv.Invocation)
	if inv.release != nil { // the Invoker is done with the arguments
		inv.release()
		inv.release, inv.Args = nil, nil
	}
	if err != nil && (nodeDone(r.node) || errors.Is(err, ErrRunnerDown) && !isFuncError(err)) {
		p.runnerDown(r)
	}
	inv.res = res
	return err
}

func isFuncError(err error) bool {
	var fe *FuncError
	return errors.As(err, &fe)
}

// runHere runs a registered function in this process, with the size limit
// a process runner applies (limit), so that what passes here passes
// there. A panic propagates (the pool recovers it).
func (inv *invocation) runHere(ctx context.Context, limit int) ([]byte, error) {
	if err := argsTooLarge(callMsg(ctx, wire.Kind(inv.Kind), inv.Func, inv.Args), limit); err != nil {
		return nil, err
	}
	res, _, err := inv.reg.run(ctx, inv.Args, runHow{argsOwned: true})
	if err != nil {
		return nil, err
	}
	if fe := resultTooLarge(inv.Func, res, limit); fe != nil {
		return nil, fe
	}
	return res, nil
}
