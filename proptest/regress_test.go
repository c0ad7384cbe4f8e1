package proptest

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/flame"
)

// Small deterministic reproductions of the bugs the property tests found,
// kept as regression tests: each failed while its bug was open.

// TestFnAsksForDoneAfterItsCtxEnded: a fn whose ctx is already cancelled
// when it first asks for Done (here its caller gave up; equally its limit
// passed or its runner went down) must see a closed Done and return its own
// error (SPEC §3.3). Found by TestPoolInvariantsUnderConcurrency: execCtx.Done
// closed the channel twice, so the Call returned *PanicError("close of
// closed channel") although fn never panicked.
func TestFnAsksForDoneAfterItsCtxEnded(t *testing.T) {
	p, err := flame.NewPool(flame.Config{Max: 1})
	require.NoError(t, err)
	defer p.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	err = p.Call(ctx, func(fctx context.Context) error {
		cancel()
		<-fctx.Done()
		return fctx.Err()
	})
	var pe *flame.PanicError
	require.NotErrorAs(t, err, &pe, "Call = %v (%T), want context.Canceled", err, err)
	require.ErrorIs(t, err, context.Canceled, "Call = %v (%T), want context.Canceled", err, err)
}
