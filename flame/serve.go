package flame

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/goflame/goflame/flame/internal/wire"
)

// callHandler is how a runner runs the registered calls its parent sends:
// the function under the CALL's id, with a ctx that carries the time left
// as its deadline and the runner's ID, its panic or error turned into an
// ERROR that fits the message limit.
//
// The CALL's arguments are the function's (a frame just read); its result
// is in a pooled buffer, which release gives back once it is sent.
func callHandler(runner uint64, maxMsg int) func(context.Context, wire.CallMsg) ([]byte, func(), *wire.ErrorMsg) {
	return func(base context.Context, m wire.CallMsg) ([]byte, func(), *wire.ErrorMsg) {
		reg := lookupFunc(m.ID)
		if reg == nil {
			return nil, nil, &wire.ErrorMsg{Code: wire.CodeNotRegistered, Message: fmt.Sprintf("flame: function %q is not registered on runner %d", m.ID, runner)}
		}
		ctx := newCallCtx(base, runner, m.Timeout)
		defer ctx.end()
		res, release, em := runHandler(ctx, reg, m.Args)
		if em == nil {
			if fe := resultTooLarge(reg.id, res, maxMsg); fe != nil {
				m := fe.toWire()
				em = &m
			}
		}
		if em != nil {
			if release != nil {
				release()
			}
			fitted := fitError(*em, maxMsg) // a huge panic or error still crosses as what it is
			return nil, nil, &fitted
		}
		return res, release, nil
	}
}

// runHandler runs a registered function, turning its error or panic into
// an ERROR message.
func runHandler(ctx context.Context, reg *registered, args []byte) (res []byte, release func(), em *wire.ErrorMsg) {
	defer func() {
		if v := recover(); v != nil {
			res, release, em = nil, nil, &wire.ErrorMsg{Code: wire.CodePanic, Message: fmt.Sprint(v), Stack: debug.Stack()}
		}
	}()
	res, release, err := reg.run(ctx, args, runHow{argsOwned: true, poolResult: true})
	if err != nil {
		m := asFuncError(reg.id, err).toWire()
		return nil, nil, &m
	}
	return res, release, nil
}

// Dispatch runs the function registered under call.Func with call.Args in
// this process, as a runner does for its parent: it decodes the arguments,
// runs the function with ctx, and encodes the result. The function's error
// comes back as a *FuncError (registered errors named), a panic as a
// *PanicError, an unknown id as an error matching ErrUnknownFunc. It is
// for backends whose runners are reached by means of their own: their
// runner side calls Dispatch for each Invocation its Invoker sent.
// call.Args is read, not kept; the result is the caller's.
func Dispatch(ctx context.Context, call Invocation) (res []byte, err error) {
	reg := lookupFunc(call.Func)
	if reg == nil {
		return nil, &FuncError{Func: call.Func, Code: CodeNotRegistered, Message: fmt.Sprintf("flame: function %q is not registered", call.Func)}
	}
	defer func() {
		if v := recover(); v != nil {
			res, err = nil, &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	res, _, err = reg.run(ctx, call.Args, runHow{})
	if err != nil {
		return nil, asFuncError(reg.id, err)
	}
	return res, nil
}
