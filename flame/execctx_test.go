package flame

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// A context fn keeps after it returns reports Canceled, even if nobody
// asked for Done while fn ran (the lazy path).
func TestRetainedCtxIsCanceledAfterFnReturnsWithoutDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Max: 1})
		var kept context.Context
		if err := p.Call(context.Background(), func(ctx context.Context) error { kept = ctx; return nil }); err != nil {
			t.Fatal(err)
		}
		if err := kept.Err(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Err after fn returned = %v, want context.Canceled", err)
		}
		select {
		case <-kept.Done():
		default:
			t.Fatal("Done of a finished context is not closed")
		}
	})
}

// The limit has passed at the instant it ends: an error returned exactly
// then is an ErrTimeout, and fn's ctx reports DeadlineExceeded.
func TestErrorReturnedExactlyAtTheLimitIsErrTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Max: 1})
		errFn := errors.New("fn failed")
		var ctxErr error
		err := p.Call(context.Background(), func(ctx context.Context) error {
			time.Sleep(time.Second)
			ctxErr = ctx.Err()
			return errFn
		}, WithTimeout(time.Second))
		if !errors.Is(err, ErrTimeout) || !errors.Is(err, errFn) {
			t.Fatalf("Call = %v, want ErrTimeout wrapping fn's error", err)
		}
		if !errors.Is(ctxErr, context.DeadlineExceeded) {
			t.Fatalf("fn's ctx.Err() at the limit = %v, want DeadlineExceeded", ctxErr)
		}
	})
}

// Close with nothing left queued logs no dropped casts.
func TestCloseWithNothingQueuedLogsNoDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf syncBuffer
		p, err := NewPool(Config{Max: 1, Logger: newTextLogger(&buf)})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Cast(context.Background(), func(context.Context) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if s := buf.String(); containsAny(s, "dropped") {
			t.Fatalf("Close logged drops with nothing dropped:\n%s", s)
		}
	})
}
