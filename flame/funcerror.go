package flame

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/goflame/goflame/flame/internal/wire"
)

// ErrorCode says what kind of failure a FuncError reports.
type ErrorCode string

// The codes of a FuncError.
const (
	CodeHandler       ErrorCode = "handler"        // the function returned an error
	CodeCanceled      ErrorCode = "canceled"       // ... that matches context.Canceled
	CodeDeadline      ErrorCode = "deadline"       // ... that matches context.DeadlineExceeded
	CodeNotRegistered ErrorCode = "not_registered" // the runner has no function under that id
	CodeTooLarge      ErrorCode = "too_large"      // arguments or result exceed the message size limit
	CodeDecode        ErrorCode = "decode"         // arguments or result do not encode or decode
	CodeVersionSkew   ErrorCode = "version_skew"   // parent and runner are different builds
	CodeProtocol      ErrorCode = "protocol"       // the runner could not follow a frame
)

// FuncError is the error of a registered function as it crossed from the
// runner: the handler's error message, intact, and a code saying what kind
// of failure it was. The same form comes back from every backend, the local
// one included, so code that handles errors behaves in tests as in
// production.
//
// errors.Is matches context.Canceled (CodeCanceled),
// context.DeadlineExceeded (CodeDeadline), ErrUnknownFunc
// (CodeNotRegistered), ErrTooLarge (CodeTooLarge), ErrBadPayload
// (CodeDecode) and ErrVersionSkew (CodeVersionSkew); and every error
// registered with RegisterError that was in the handler's error chain, by
// its code (FuncError unwraps to them). A handler panic comes back as
// *PanicError instead, with the panic value as a string when it crossed a
// process boundary.
type FuncError struct {
	Func    string    // the function id
	Code    ErrorCode // what kind of failure
	Message string    // the error's message
	// Registered are the codes (RegisterError) of the registered errors in
	// the handler's error chain.
	Registered []string
}

func (e *FuncError) Error() string { return e.Message }

// Is reports whether target is the sentinel that e's code stands for.
func (e *FuncError) Is(target error) bool {
	switch target {
	case context.Canceled:
		return e.Code == CodeCanceled
	case context.DeadlineExceeded:
		return e.Code == CodeDeadline
	case ErrUnknownFunc:
		return e.Code == CodeNotRegistered
	case ErrTooLarge:
		return e.Code == CodeTooLarge
	case ErrBadPayload:
		return e.Code == CodeDecode
	case ErrVersionSkew:
		return e.Code == CodeVersionSkew
	}
	return false
}

// Unwrap returns the registered errors that e names, so that errors.Is and
// errors.As find them.
func (e *FuncError) Unwrap() []error {
	if len(e.Registered) == 0 {
		return nil
	}
	errs := make([]error, 0, len(e.Registered))
	for _, code := range e.Registered {
		if err := lookupError(code); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// registeredErrors maps codes to the errors registered under them, in
// registration order. Written at init time (RegisterError), read when a
// handler's error crosses.
var registeredErrors struct {
	mu    sync.RWMutex
	codes []string
	errs  map[string]error
}

// RegisterError registers err under code, so that it keeps its identity
// across a process boundary: when a registered function's error has err
// anywhere in its chain (errors.Is), the caller's *FuncError matches err
// too, on every backend, and its message crosses intact:
//
//	var ErrMissing = errors.New("thumbnail source missing")
//
//	func init() { flame.RegisterError("thumbs.missing", ErrMissing) }
//
//	// in the handler: return fmt.Errorf("thumb %d: %w", id, ErrMissing)
//	// for the caller: errors.Is(err, ErrMissing) holds
//
// Call it at package level, like Register: parent and runner must register
// the same errors (their codes are part of the registry that the runner's
// handshake compares). It panics if code is empty, longer than 128 bytes or
// already registered, or if err is nil or already registered.
func RegisterError(code string, err error) {
	if code == "" || len(code) > wire.MaxErrorCodeLen {
		panic(fmt.Sprintf("flame.RegisterError: code must be 1 to %d bytes, got %q", wire.MaxErrorCodeLen, code))
	}
	if err == nil {
		panic(fmt.Sprintf("flame.RegisterError(%q): nil error", code))
	}
	registeredErrors.mu.Lock()
	defer registeredErrors.mu.Unlock()
	if registeredErrors.errs == nil {
		registeredErrors.errs = map[string]error{}
	}
	if _, dup := registeredErrors.errs[code]; dup {
		panic(fmt.Sprintf("flame.RegisterError: code %q registered twice", code))
	}
	for c, e := range registeredErrors.errs {
		if e == err {
			panic(fmt.Sprintf("flame.RegisterError(%q): the error is registered already, as %q", code, c))
		}
	}
	registeredErrors.errs[code] = err
	registeredErrors.codes = append(registeredErrors.codes, code)
	registry.hash.Store(nil)
}

func lookupError(code string) error {
	registeredErrors.mu.RLock()
	defer registeredErrors.mu.RUnlock()
	return registeredErrors.errs[code]
}

// registeredIn returns the codes of the registered errors in err's chain,
// in registration order (at most wire.MaxErrorCodes).
func registeredIn(err error) []string {
	registeredErrors.mu.RLock()
	defer registeredErrors.mu.RUnlock()
	var codes []string
	for _, code := range registeredErrors.codes {
		if errors.Is(err, registeredErrors.errs[code]) {
			codes = append(codes, code)
			if len(codes) == wire.MaxErrorCodes {
				break
			}
		}
	}
	return codes
}

// errorRegistryLines describes the registered error codes for the
// registry hash.
func errorRegistryLines() []string {
	registeredErrors.mu.RLock()
	defer registeredErrors.mu.RUnlock()
	lines := make([]string, 0, len(registeredErrors.codes))
	for _, code := range registeredErrors.codes {
		lines = append(lines, "error\x00"+code+"\n")
	}
	return lines
}

// asFuncError turns a handler's error into the form it crosses in.
func asFuncError(id string, err error) *FuncError {
	var fe *FuncError
	if errors.As(err, &fe) && fe.Code != CodeHandler {
		return &FuncError{Func: id, Code: fe.Code, Message: err.Error(), Registered: registeredIn(err)}
	}
	code := CodeHandler
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		code = CodeDeadline
	case errors.Is(err, context.Canceled):
		code = CodeCanceled
	}
	return &FuncError{Func: id, Code: code, Message: err.Error(), Registered: registeredIn(err)}
}

// wireCodes maps FuncError codes to wire codes and back.
var wireCodes = map[ErrorCode]wire.Code{
	CodeHandler: wire.CodeHandler, CodeCanceled: wire.CodeCanceled, CodeDeadline: wire.CodeDeadline,
	CodeNotRegistered: wire.CodeNotRegistered, CodeTooLarge: wire.CodeTooLarge, CodeDecode: wire.CodeDecode,
	CodeVersionSkew: wire.CodeVersionSkew, CodeProtocol: wire.CodeProtocol,
}

// toWire is e as an ERROR message.
func (e *FuncError) toWire() wire.ErrorMsg {
	c, ok := wireCodes[e.Code]
	if !ok {
		c = wire.CodeHandler
	}
	return wire.ErrorMsg{Code: c, Message: e.Message, Registered: e.Registered}
}

// funcErrorOf is the FuncError an ERROR message (not a panic) stands for.
func funcErrorOf(id string, m wire.ErrorMsg) *FuncError {
	return &FuncError{Func: id, Code: ErrorCode(m.Code.String()), Message: m.Message, Registered: m.Registered}
}

// callMsg is the CALL a registered call sends (or would send, on a local
// runner): its deadline travels as the time left.
func callMsg(ctx context.Context, kind wire.Kind, id string, args []byte) wire.CallMsg {
	m := wire.CallMsg{Kind: kind, ID: id, Args: args}
	if dl, ok := ctx.Deadline(); ok {
		m.Timeout = max(time.Until(dl), 1)
	}
	return m
}

// argsTooLarge is the error of a call whose CALL frame would exceed limit,
// or nil. Every backend applies it, so that what passes locally passes
// across a process too.
func argsTooLarge(m wire.CallMsg, limit int) error {
	if wire.CallPayloadLen(m) <= limit {
		return nil
	}
	return &FuncError{Func: m.ID, Code: CodeTooLarge,
		Message: fmt.Sprintf("flame: %s: arguments of %d bytes exceed the message size limit of %d bytes", m.ID, len(m.Args), limit)}
}

// resultTooLarge is the error of a result above limit, or nil.
func resultTooLarge(id string, res []byte, limit int) *FuncError {
	if len(res) <= limit {
		return nil
	}
	return &FuncError{Func: id, Code: CodeTooLarge,
		Message: fmt.Sprintf("flame: %s: result of %d bytes exceeds the message size limit of %d bytes", id, len(res), limit)}
}

// truncatedMark ends a message or stack cut to fit the size limit.
const truncatedMark = " … [truncated]"

// fitError cuts m's stack, then its message, so that its frame's payload
// fits in limit bytes: an error or panic too large to cross keeps its
// kind, rather than turning into a too-large error.
func fitError(m wire.ErrorMsg, limit int) wire.ErrorMsg {
	over := wire.ErrorPayloadLen(m) - limit
	if over <= 0 {
		return m
	}
	if len(m.Stack) > 0 {
		keep := max(0, len(m.Stack)-over-len(truncatedMark))
		m.Stack = append(m.Stack[:keep:keep], truncatedMark...)
		if over = wire.ErrorPayloadLen(m) - limit; over <= 0 {
			return m
		}
		m.Stack = nil
		over = wire.ErrorPayloadLen(m) - limit
	}
	if over > 0 {
		keep := max(0, len(m.Message)-over-len(truncatedMark))
		for keep > 0 && !utf8.RuneStart(m.Message[keep]) {
			keep--
		}
		m.Message = strings.Clone(m.Message[:keep]) + truncatedMark
	}
	return m
}
