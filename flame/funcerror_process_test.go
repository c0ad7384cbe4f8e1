//go:build unix

package flame_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/flame"
)

var thumbFn = flame.Register("test.thumb", func(ctx context.Context, id int) (string, error) {
	return "", fmt.Errorf("thumb %d: %w", id, errThumbMissing)
})

// test.bigpanic panics, and test.bigerror fails, with a message of n bytes.
var bigPanicFn = flame.Register("test.bigpanic", func(ctx context.Context, n int) (int, error) {
	panic(strings.Repeat("é", n/2))
})

var bigErrorFn = flame.Register("test.bigerror", func(ctx context.Context, n int) (int, error) {
	return 0, fmt.Errorf("%s: %w", strings.Repeat("é", n/2), errThumbMissing)
})

// backends runs f against a local pool and a process pool.
func backends(t *testing.T, f func(t *testing.T, p *flame.Pool)) {
	t.Run("local", func(t *testing.T) {
		p, err := flame.NewPool(flame.Config{Max: 1})
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.Close(context.Background()) })
		f(t, p)
	})
	t.Run("process", func(t *testing.T) {
		p, _ := procPool(t, flame.Config{Max: 1}, flame.ProcessBackend{MaxMessageSize: 64 << 10})
		f(t, p)
	})
}

// A registered error anywhere in the handler's chain keeps its identity
// for the caller, on every backend, and the message crosses intact.
func TestRegisteredErrorKeepsItsIdentityAcrossTheBoundary(t *testing.T) {
	backends(t, func(t *testing.T, p *flame.Pool) {
		_, err := thumbFn.Call(context.Background(), p, 7)
		assert.ErrorIs(t, err, errThumbMissing)
		assert.EqualError(t, err, "thumb 7: thumbnail source missing")
		var fe *flame.FuncError
		require.ErrorAs(t, err, &fe)
		assert.Equal(t, flame.CodeHandler, fe.Code)
		assert.Equal(t, []string{"test.thumb-missing"}, fe.Registered)
	})
}

// A panic or error too large for a message still comes back as what it
// is (cut to fit, saying so), not as a too-large error.
func TestHugePanicsAndErrorsKeepTheirKind(t *testing.T) {
	backends(t, func(t *testing.T, p *flame.Pool) {
		_, err := bigPanicFn.Call(context.Background(), p, 1<<20)
		var pe *flame.PanicError
		require.ErrorAs(t, err, &pe, "a 1 MiB panic: %v", err)
		assert.True(t, strings.HasPrefix(fmt.Sprint(pe.Value), "éé"))

		_, err = bigErrorFn.Call(context.Background(), p, 1<<20)
		var fe *flame.FuncError
		require.ErrorAs(t, err, &fe)
		assert.Equal(t, flame.CodeHandler, fe.Code)
		assert.ErrorIs(t, err, errThumbMissing, "the registered error survives the cut")
		assert.True(t, utf8.ValidString(fe.Message), "cut on a rune boundary")
	})
}

// On a process runner the cut is visible: message and stack fit the limit.
func TestHugePanicOnAProcessIsCutToFit(t *testing.T) {
	p, _ := procPool(t, flame.Config{Max: 1}, flame.ProcessBackend{MaxMessageSize: 64 << 10})
	_, err := bigPanicFn.Call(context.Background(), p, 1<<20)
	var pe *flame.PanicError
	require.ErrorAs(t, err, &pe)
	msg := fmt.Sprint(pe.Value)
	assert.Less(t, len(msg)+len(pe.Stack), 64<<10)
	assert.True(t, strings.HasSuffix(msg, "[truncated]"), "the cut says so")
	assert.True(t, utf8.ValidString(msg))
}

// What passes locally passes on a process runner: LocalBackend refuses
// arguments and results above the default message size limit (16 MiB),
// as a process runner does.
func TestLocalBackendAppliesTheDefaultMessageSizeLimit(t *testing.T) {
	p, err := flame.NewPool(flame.Config{Max: 1})
	require.NoError(t, err)
	defer p.Close(context.Background())
	ctx := context.Background()
	_, err = echoFn.Call(ctx, p, echoIn{Name: strings.Repeat("a", 20<<20)})
	assert.ErrorIs(t, err, flame.ErrTooLarge)
	assert.Contains(t, err.Error(), "arguments of")
	_, err = blobFn.Call(ctx, p, 17<<20)
	assert.ErrorIs(t, err, flame.ErrTooLarge)
	assert.Contains(t, err.Error(), "result of")
	s, err := blobFn.Call(ctx, p, 15<<20)
	assert.NoError(t, err)
	assert.Len(t, s, 15<<20)
}
