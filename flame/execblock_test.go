package flame

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Contexts come from blocks, but a context is never handed out twice: a fn
// that keeps its ctx finds it over (Canceled) after it returns, however
// many calls run after it on the same runner, each with a live ctx of its
// own.
func TestKeptContextsStayOverAcrossBlocks(t *testing.T) {
	p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 4})
	const calls = 5*execBlockLen + 3
	kept := make([]context.Context, 0, calls)
	seen := make(map[context.Context]bool, calls)
	for i := range calls {
		require.NoError(t, p.Call(context.Background(), func(ctx context.Context) error {
			assert.NoErrorf(t, ctx.Err(), "call %d started with a context that was over", i)
			assert.Falsef(t, seen[ctx], "call %d got a context another call had", i)
			seen[ctx] = true
			kept = append(kept, ctx)
			return nil
		}))
	}
	for i, ctx := range kept {
		assert.ErrorIsf(t, ctx.Err(), context.Canceled, "the context of call %d, kept after it returned", i)
	}
}

// The same with callers on every core and slots held concurrently: every
// call gets a context of its own, live while it runs.
func TestConcurrentCallsGetContextsOfTheirOwn(t *testing.T) {
	p := mustPool(t, Config{Min: 2, Max: 2, MaxConcurrency: 8})
	const callers, each = 16, 4 * execBlockLen
	var mu sync.Mutex
	seen := make(map[context.Context]int, callers*each)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range each {
				err := p.Call(context.Background(), func(ctx context.Context) error {
					mu.Lock()
					seen[ctx]++
					mu.Unlock()
					return ctx.Err()
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	assert.Len(t, seen, callers*each, "contexts shared between calls")
}

// ctxEntry gives each generation its own entry of the current block, and
// starts a new block for a generation outside it: past it, before it (a
// checkout that got here late), or across the generation's wrap-around.
func TestCtxEntryIsOnePerGeneration(t *testing.T) {
	r := &runner{}
	first := r.ctxEntry(100)
	b := r.block.Load()
	require.NotNil(t, b)
	assert.Same(t, &b.ctxs[0], first)
	assert.Same(t, &b.ctxs[5], r.ctxEntry(105))
	assert.Same(t, &b.ctxs[execBlockLen-1], r.ctxEntry(100+execBlockLen-1), "the block's last entry")

	past := r.ctxEntry(100 + execBlockLen)
	nb := r.block.Load()
	assert.NotSame(t, b, nb, "a generation past the block starts a new one")
	assert.Same(t, &nb.ctxs[0], past)

	late := r.ctxEntry(99 + execBlockLen) // taken before the one above, but here after it
	assert.NotSame(t, nb, r.block.Load(), "a generation before the block starts a new one")
	assert.NotSame(t, past, late)
	for i := range nb.ctxs {
		assert.NotSame(t, &nb.ctxs[i], late, "a late generation got an entry of the block past it")
	}

	r.block.Store(&execBlock{first: genMask - 1}) // the last generations before the wrap
	wb := r.block.Load()
	assert.Same(t, &wb.ctxs[1], r.ctxEntry(genMask))
	assert.Same(t, &wb.ctxs[2], r.ctxEntry(0), "the block goes on across the wrap")
}

// Slots handed from caller to caller get contexts from the blocks too,
// each its own: every handoff takes the entry of the generation it took
// the runner's word to.
func TestHandedOverSlotsGetContextsOfTheirOwn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1})
		held := callHold(context.Background(), p)
		synctest.Wait()
		const callers = 3 * execBlockLen
		var mu sync.Mutex
		var kept []context.Context
		seen := make(map[context.Context]bool, callers)
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				err := p.Call(context.Background(), func(ctx context.Context) error {
					mu.Lock()
					defer mu.Unlock()
					assert.False(t, seen[ctx], "a context handed out twice")
					seen[ctx] = true
					kept = append(kept, ctx)
					return ctx.Err()
				})
				assert.NoError(t, err)
			})
		}
		synctest.Wait()
		require.Equal(t, callers, p.Stats().Waiting, "every caller queues behind the held slot")
		close(held.release)
		require.NoError(t, <-held.done)
		wg.Wait()
		assert.Len(t, kept, callers)
		for _, ctx := range kept {
			assert.ErrorIs(t, ctx.Err(), context.Canceled, "a kept context is not over")
		}
	})
}

// handOn reports the generation it took the word to, the one whose entry
// the waiter gets.
func TestHandOnReportsTheNewGeneration(t *testing.T) {
	r := &runner{}
	r.word.Store(genMask<<genShift | stActive | 1) // the last generation before the wrap
	gen, ok := r.handOn()
	require.True(t, ok)
	assert.Equal(t, r.word.Load()>>genShift, gen)
	assert.Zero(t, gen, "the generation wraps to 0")
	r.Kill()
	_, ok = r.handOn()
	assert.False(t, ok, "handed on a slot of a runner that takes no work")
}

// Each entry of a block sits on a cache line of its own, so calls on
// different cores never write to one line.
func TestBlockEntriesHaveCacheLinesOfTheirOwn(t *testing.T) {
	require.Equal(t, uintptr(64), unsafe.Sizeof(execCtx{}), "an entry is one cache line")
	r := &runner{}
	r.ctxEntry(0)
	for i := range execBlockLen {
		addr := uintptr(unsafe.Pointer(r.ctxEntry(uint64(i))))
		assert.Zerof(t, addr%64, "entry %d starts inside a cache line", i)
	}
}
