// Package flame runs work on an elastic pool of runners, the FLAME pattern
// (github.com/phoenixframework/flame) for Go.
//
// A Pool boots runners through a Backend, up to Config.Max, each with
// Config.MaxConcurrency slots. Call checks out a slot on the least-loaded
// runner, runs fn there and returns its result; when every slot is taken,
// callers queue in FIFO order and the pool boots more runners for them.
// Runners that stay idle shut down again, down to Config.Min (zero by
// default), so a pool costs nothing between bursts.
//
//	pool, err := flame.NewPool(flame.Config{Max: 10, MaxConcurrency: 4})
//	if err != nil { ... }
//	defer pool.Close(context.Background())
//
//	thumb, err := flame.Call(ctx, pool, func(ctx context.Context) ([]byte, error) {
//		return render(ctx, video)
//	})
//
// Besides Call there are Cast (fire and forget: its errors are logged) and
// PlaceChild (start long-lived work on a runner and keep a handle to it).
// Every call takes WithTimeout and WithLink options.
//
// # Runners
//
// LocalBackend, the default, runs work in this process: a runner is then a
// share of the pool's capacity, and a linked call's fn runs on the caller's
// own goroutine. Other backends boot runners elsewhere (processes,
// machines); they implement Backend and Node.
//
// # Runners in other processes
//
// ProcessBackend boots runners as child processes of the same binary. Go
// cannot send closures to another process, so work for them is a function
// registered under a stable name with Register, called through the
// returned Func (Call, Cast, Place) with JSON-encoded arguments; main must
// call Main first, so that a copy started as a runner serves and exits (and
// so must the TestMain of a test binary that uses ProcessBackend). A plain
// closure sent to a process runner fails with ErrNotPortable. A handler's
// error comes back as a *FuncError with its message intact; errors
// registered with RegisterError keep their identity for errors.Is.
//
// # Errors
//
// Call returns fn's own error unchanged. The pool adds its own conditions as
// wrapping errors that errors.Is can match: ErrCheckoutTimeout (no slot
// within the checkout wait), ErrTimeout (fn returned an error after its
// execution limit), ErrRunnerDown (the runner crashed under fn), ErrClosed,
// and ErrBootFailed (a boot failed in a way retrying cannot fix, such as a
// missing runner executable: the callers waiting for it fail at once). A
// panic in fn comes back as a *PanicError; it never crashes the caller or
// the pool. ErrCheckoutTimeout and ErrTimeout also match
// context.DeadlineExceeded. Close returns an error matching ErrAbandoned
// when backend code (Backend.Boot, Node.Shutdown) outlived its limit.
//
// # Concurrency
//
// The checkout path is lock-free: each runner's state and load share one
// atomic word, so taking a slot is a scan of the published runners and one
// compare-and-swap, with no allocation. Callers queue under a mutex only
// when no slot is free, and a release hands its slot straight to the head
// of the queue. A separate scaler goroutine boots, retries, idles down and
// resizes; callers only wake it. User code (fn, hooks, IdleCheck, Backend
// methods) never runs under a pool lock.
//
// fn's ctx is its own and may be kept after fn returns (it then reports
// context.Canceled). Contexts are allocated 30 at a time, per runner, so a
// kept one also keeps the 29 that share its allocation, and their parent
// contexts, from being collected until it is dropped.
//
// # Scaling
//
// A runner boots when every runner is full, there is room under Max, and
// the callers waiting outnumber what the boots under way will serve: five
// callers arriving together on an empty pool with MaxConcurrency 2 boot
// three runners. A failed boot is retried after a second, only while unmet
// demand remains, and a Boot call counts against Max until it returns, even
// past BootTimeout. Runners booted for demand shut down after
// IdleShutdownAfter without work; Min runners stay (MinIdleShutdownAfter).
// A crashed runner's work fails with ErrRunnerDown, queued callers are
// re-served, and Min is restored. Resize changes Min and Max at run time.
//
// The hooks OnGrowStart, OnGrowEnd and OnShrink report boots and shutdowns;
// OnGrowEnd and OnShrink run one at a time, in order, on the scaler's
// goroutine, so they should be quick.
package flame
