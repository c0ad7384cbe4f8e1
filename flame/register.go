package flame

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/goflame/goflame/flame/internal/wire"
)

// Errors of registered functions and process runners.
var (
	// ErrNotPortable is returned when a plain closure (Pool.Call, Cast,
	// PlaceChild) is sent to a runner in another process: such a runner runs
	// only functions registered with Register (use Func.Call, Cast, Place).
	ErrNotPortable = errors.New("flame: a runner in another process cannot run a closure; register the function with flame.Register and use Func.Call")

	// ErrUnknownFunc: the runner has no function under the id asked for.
	ErrUnknownFunc = errors.New("flame: function not registered on the runner")

	// ErrTooLarge: arguments or a result exceed the message size limit
	// (ProcessBackend.MaxMessageSize).
	ErrTooLarge = errors.New("flame: message exceeds the size limit")

	// ErrBadPayload: arguments or a result could not be encoded or decoded.
	ErrBadPayload = errors.New("flame: arguments or result do not encode or decode")

	// ErrVersionSkew: parent and runner are not the same build, or do not
	// register the same functions with the same types. A runner boot fails
	// with it.
	ErrVersionSkew = errors.New("flame: version skew between parent and runner")
)

// Func is a function registered under a stable id: it runs on any runner,
// in this process or in a runner process of the same binary. Its arguments
// and result always go through its codec (CBOR unless WithCodec says
// otherwise), on every backend, so a value that cannot cross a process
// boundary fails in tests too.
type Func[In, Out any] struct {
	reg   *registered
	fn    func(context.Context, In) (Out, error)
	codec Codec
}

// Register registers fn under id and returns its handle. Call it at package
// level (var f = flame.Register(...)), so that a parent and its runners,
// which are the same binary, register the same functions. It panics if id
// is empty, longer than 1024 bytes, or already registered.
//
// On a runner, fn's ctx carries the call's deadline and is cancelled when
// the caller cancels; RunnerID works on it. An error fn returns comes back
// to the caller as a *FuncError, a panic as a *PanicError.
//
// What crosses is what the codec encodes: exported fields (named by their
// cbor or json tags with CBOR), not unexported ones, channels or funcs.
// Arguments and results are limited in size by the backend
// (MaxMessageSize, 16 MiB by default; ErrTooLarge).
func Register[In, Out any](id string, fn func(context.Context, In) (Out, error), opts ...RegisterOption) *Func[In, Out] {
	if id == "" || len(id) > wire.MaxIDLen {
		panic(fmt.Sprintf("flame.Register: id must be 1 to %d bytes, got %q", wire.MaxIDLen, id))
	}
	if fn == nil {
		panic(fmt.Sprintf("flame.Register(%q): nil function", id))
	}
	o := registerOptions{codec: CBOR}
	for _, opt := range opts {
		opt(&o)
	}
	if o.codec == nil || o.codec.Name() == "" {
		panic(fmt.Sprintf("flame.Register(%q): a codec must not be nil and must have a name", id))
	}
	f := &Func[In, Out]{fn: fn, codec: o.codec}
	f.reg = &registered{
		id:        id,
		keepsArgs: keepsBytes[In](o.codec),
		sig:       fmt.Sprintf("%v -> %v (%s)", reflect.TypeFor[In](), reflect.TypeFor[Out](), o.codec.Name()),
		run:       f.serve,
	}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if registry.funcs == nil {
		registry.funcs = map[string]*registered{}
	}
	if _, dup := registry.funcs[id]; dup {
		panic(fmt.Sprintf("flame.Register: id %q registered twice", id))
	}
	registry.funcs[id] = f.reg
	registry.hash.Store(nil)
	return f
}

// ID returns the id f was registered under.
func (f *Func[In, Out]) ID() string { return f.reg.id }

// Call runs f with in on a runner of p and returns its result: Pool.Call
// for a registered function, with the same checkout, limits, options and
// errors. On a runner in another process the call crosses there (the
// node's Invoker); on a local runner f runs in this process, arguments and
// result still going through the codec. f's own error comes back as a
// *FuncError (see there).
func (f *Func[In, Out]) Call(ctx context.Context, p *Pool, in In, opts ...CallOption) (Out, error) {
	var out Out
	inv, err := f.invocation(in, KindCall)
	if err != nil {
		return out, err
	}
	if err := p.call(ctx, job{inv: inv}, opts); err != nil {
		return out, err
	}
	if err := decodeOwned(f.codec, inv.res, &out); err != nil {
		return out, fmt.Errorf("%w: %s: decoding the result: %w", ErrBadPayload, f.reg.id, err)
	}
	return out, nil
}

// Cast runs f with in on a runner of p without waiting: Pool.Cast for a
// registered function. The result is dropped; errors are logged by the pool.
func (f *Func[In, Out]) Cast(ctx context.Context, p *Pool, in In, opts ...CallOption) error {
	inv, err := f.invocation(in, KindCast)
	if err != nil {
		return err
	}
	return p.cast(ctx, job{inv: inv}, opts)
}

// Place starts f with in on a runner of p and returns once it has started:
// Pool.PlaceChild for a registered function. The child's Err is f's error;
// its result is dropped.
func (f *Func[In, Out]) Place(ctx context.Context, p *Pool, in In, opts ...CallOption) (*Child, error) {
	inv, err := f.invocation(in, KindPlace)
	if err != nil {
		return nil, err
	}
	return p.place(ctx, job{inv: inv}, opts)
}

// invocation encodes in. The arguments go into a pooled buffer, which the
// pool gives back once an Invoker has sent them (invocation.release).
func (f *Func[In, Out]) invocation(in In, kind Kind) (*invocation, error) {
	args, release, err := encode(f.codec, in, true)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: encoding the arguments: %w", ErrBadPayload, f.reg.id, err)
	}
	return &invocation{Invocation: Invocation{Func: f.reg.id, Kind: kind, Args: args}, reg: f.reg, release: release}, nil
}

// serve decodes args, runs fn and encodes its result. Errors come back as
// *FuncError; a panic propagates to the caller (the pool or the runner
// recovers it). How args and the result may be handled is how.
func (f *Func[In, Out]) serve(ctx context.Context, args []byte, how runHow) ([]byte, func(), error) {
	var in In
	var err error
	if how.argsOwned {
		err = decodeOwned(f.codec, args, &in)
	} else {
		err = f.codec.Unmarshal(args, &in)
	}
	if err != nil {
		return nil, nil, &FuncError{Func: f.reg.id, Code: CodeDecode,
			Message: fmt.Sprintf("flame: %s: decoding the arguments: %v", f.reg.id, err)}
	}
	out, err := f.fn(ctx, in)
	if err != nil {
		return nil, nil, asFuncError(f.reg.id, err)
	}
	res, release, err := encode(f.codec, out, how.poolResult)
	if err != nil {
		return nil, nil, &FuncError{Func: f.reg.id, Code: CodeDecode,
			Message: fmt.Sprintf("flame: %s: encoding the result: %v", f.reg.id, err)}
	}
	return res, release, nil
}

// runHow says what a registered function's run may do with its bytes.
type runHow struct {
	argsOwned  bool // args are the run's: a []byte argument may keep their memory
	poolResult bool // the result is sent and dropped: it may be in a pooled buffer, released by the func run returns
}

// registered is one entry of the registry.
type registered struct {
	id  string
	sig string // "In -> Out (codec)", part of the registry hash
	run func(ctx context.Context, args []byte, how runHow) (res []byte, release func(), err error)
	// keepsArgs: run may keep the memory of args it owns (a []byte
	// argument), so they must not be reused after it.
	keepsArgs bool
}

// registry holds every registered function. Written at init time
// (Register), read by runners on every call.
var registry struct {
	mu    sync.RWMutex
	funcs map[string]*registered
	hash  atomic.Pointer[string] // nil: recompute
}

func lookupFunc(id string) *registered {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	return registry.funcs[id]
}

// registryHash identifies the set of registered ids and their types, and
// the registered error codes.
func registryHash() string {
	if h := registry.hash.Load(); h != nil {
		return *h
	}
	registry.mu.RLock()
	lines := make([]string, 0, len(registry.funcs))
	for id, r := range registry.funcs {
		lines = append(lines, id+"\x00"+r.sig+"\n")
	}
	registry.mu.RUnlock()
	lines = append(lines, errorRegistryLines()...)
	slices.Sort(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "")))
	h := fmt.Sprintf("%d:%s", len(lines), hex.EncodeToString(sum[:8]))
	registry.hash.Store(&h)
	return h
}
