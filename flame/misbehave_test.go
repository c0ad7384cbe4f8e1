package flame

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// oddBackend boots oddNodes, whose Exec and Shutdown misbehave on request.
type oddBackend struct {
	execPanics   bool
	shutdownHang bool
	mu           sync.Mutex
	nodes        []*oddNode
}

func (b *oddBackend) Boot(ctx context.Context, spec RunnerSpec) (Node, error) {
	n := &oddNode{b: b, done: make(chan struct{}), release: make(chan struct{})}
	b.mu.Lock()
	b.nodes = append(b.nodes, n)
	b.mu.Unlock()
	return n, nil
}

type oddNode struct {
	b       *oddBackend
	done    chan struct{}
	once    sync.Once
	release chan struct{} // a hung Shutdown returns when this closes
}

func (n *oddNode) Exec(ctx context.Context, fn func(context.Context) error) error {
	if n.b.execPanics {
		panic("node: Exec exploded")
	}
	return fn(ctx)
}

func (n *oddNode) Shutdown(ctx context.Context) error {
	if n.b.shutdownHang {
		<-n.release // ignores ctx
	}
	n.once.Do(func() { close(n.done) })
	return nil
}

func (n *oddNode) Done() <-chan struct{} { return n.done }

func TestExecPanicIsReturnedAsPanicErrorAndPoolKeepsServing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &oddBackend{execPanics: true}
		p := mustPool(t, Config{Max: 1, MaxConcurrency: 1, Backend: b})
		for range 3 {
			err := p.Call(context.Background(), func(context.Context) error { return nil })
			var pe *PanicError
			if !errors.As(err, &pe) || pe.Value != "node: Exec exploded" {
				t.Fatalf("Call = %v, want *PanicError from Exec", err)
			}
		}
		if st := p.Stats(); st.InUse != 0 || st.Runners != 1 {
			t.Fatalf("after Exec panics: %+v, want the slot released and the runner kept", st)
		}
	})
}

func TestHungNodeShutdownIsBoundedByShutdownTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &oddBackend{shutdownHang: true}
		var buf syncBuffer
		log, logs := slog.New(slog.NewTextHandler(&buf, nil)), buf.String
		p, err := NewPool(Config{Max: 1, Backend: b, IdleShutdownAfter: time.Second, ShutdownTimeout: 3 * time.Second, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Call(context.Background(), func(context.Context) error { return nil }); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2*time.Second + time.Millisecond) // idles down; its Shutdown hangs
		synctest.Wait()
		if st := p.Stats(); st.Runners != 0 || st.Shrunk != 1 {
			t.Fatalf("stats %+v: the runner should be removed at once", st)
		}
		start := time.Now()
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if !strings.Contains(logs(), "runner shutdown exceeded ShutdownTimeout") {
			t.Fatalf("no log line about the hung shutdown after %v; logs:\n%s", time.Since(start), logs())
		}
		// The pool keeps serving: a new runner boots.
		if err := p.Call(context.Background(), func(context.Context) error { return nil }); err != nil {
			t.Fatal(err)
		}
		close(b.nodes[0].release)
		for _, n := range b.nodes[1:] {
			close(n.release)
		}
		if err := p.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// A fn that calls back into its own pool: with a free slot the inner call
// runs; without one it waits and times out like any other call. Neither
// deadlocks the pool.
func TestReentrantCallWithFreeCapacityRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Max: 1, MaxConcurrency: 2})
		v, err := Call(context.Background(), p, func(ctx context.Context) (int, error) {
			return Call(ctx, p, func(context.Context) (int, error) { return 7, nil })
		})
		if err != nil || v != 7 {
			t.Fatalf("re-entrant call = %d, %v; want 7, nil", v, err)
		}
	})
}

func TestReentrantCallWithoutCapacityTimesOutLikeAnyCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Max: 1, MaxConcurrency: 1, BootTimeout: 5 * time.Second})
		start := time.Now()
		err := p.Call(context.Background(), func(ctx context.Context) error {
			return p.Call(ctx, func(context.Context) error { return nil })
		})
		if !errors.Is(err, ErrCheckoutTimeout) {
			t.Fatalf("outer call = %v, want the inner call's ErrCheckoutTimeout", err)
		}
		if got := time.Since(start); got != 5*time.Second {
			t.Fatalf("inner call waited %v, want BootTimeout (5s)", got)
		}
		if err := p.Call(context.Background(), func(context.Context) error { return nil }); err != nil {
			t.Fatalf("pool after re-entrant timeout: %v", err)
		}
	})
}

// Close from inside a fn cannot wait for that fn: it returns ctx.Err() when
// its ctx ends, the fn's ctx is cancelled, and the pool ends up closed.
func TestCloseFromInsideFnReturnsWhenItsCtxEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, err := NewPool(Config{Max: 1})
		if err != nil {
			t.Fatal(err)
		}
		var closeErr error
		callErr := p.Call(context.Background(), func(ctx context.Context) error {
			cctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			closeErr = p.Close(cctx)
			return ctx.Err()
		})
		if !errors.Is(closeErr, context.DeadlineExceeded) {
			t.Fatalf("Close inside fn = %v, want DeadlineExceeded", closeErr)
		}
		if !errors.Is(callErr, context.Canceled) || !errors.Is(callErr, ErrClosed) {
			t.Fatalf("Call = %v, want its ctx cancelled by Close (ErrClosed)", callErr)
		}
		synctest.Wait()
		if err := p.Call(context.Background(), func(context.Context) error { return nil }); !errors.Is(err, ErrClosed) {
			t.Fatalf("Call after Close = %v, want ErrClosed", err)
		}
		if st := p.Stats(); st.InUse != 0 || st.Runners != 0 {
			t.Fatalf("after Close: %+v", st)
		}
	})
}

// A fn that ignores its ctx holds its slot until it returns: Close with an
// expiring ctx returns ctx.Err() without waiting for it, and the slot is
// released when the fn finally returns.
func TestFnIgnoringCtxDelaysOnlyItselfAtClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, err := NewPool(Config{Max: 1})
		if err != nil {
			t.Fatal(err)
		}
		unblock := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- p.Call(context.Background(), func(context.Context) error { <-unblock; return nil })
		}()
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := p.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Close = %v, want DeadlineExceeded", err)
		}
		close(unblock)
		if err := <-done; err != nil {
			t.Fatalf("the fn returned nil, so Call must too: %v", err)
		}
		synctest.Wait()
		if st := p.Stats(); st.InUse != 0 {
			t.Fatalf("slot not released: %+v", st)
		}
	})
}

// A Close racing Resize and another Close is safe: one Close does the work,
// the other returns nil, Resize returns nil or ErrClosed.
func TestCloseRacingResizeAndCloseIsSafe(t *testing.T) {
	for range 50 {
		p, err := NewPool(Config{Min: 2, Max: 4})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for range 2 {
			wg.Go(func() { errs <- p.Close(context.Background()) })
		}
		wg.Go(func() {
			if err := p.Resize(3, 5); err != nil && !errors.Is(err, ErrClosed) {
				errs <- err
			}
		})
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if st := p.Stats(); st.Runners != 0 || st.Pending != 0 {
			t.Fatalf("after Close: %+v", st)
		}
	}
}
