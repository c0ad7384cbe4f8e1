package flame

// execBlockLen is how many contexts one execBlock holds: 30 of 64 bytes
// and a cache line for the generation and the allocator's 8-byte header
// fill a 2 KiB allocation.
const execBlockLen = 30

// execBlock is one allocation that serves the contexts of execBlockLen
// consecutive checkouts of a runner (by generation), each entry used once.
// The allocation starts on a 2 KiB boundary with the allocator's 8-byte
// header (as every object over 512 bytes that holds pointers), so the
// padding puts each entry on a cache line of its own: calls on different
// cores then never write to one line. TestBlockEntriesHaveCacheLinesOfTheirOwn
// checks that this holds.
type execBlock struct {
	first uint64 // the generation whose context is ctxs[0]
	_     [48]byte
	ctxs  [execBlockLen]execCtx
}

// ctxEntry returns a zeroed execCtx for the checkout that took the runner's
// generation to gen, one that no other checkout gets: its entry of the
// current block, or the first entry of a new block that becomes current.
// A fn may keep its ctx after it returns, so a context is never reused;
// the block only spreads one allocation (and the garbage collector's
// per-object work) over execBlockLen calls. The work of every checkout, a
// handoff included, takes its entry, and one outside the block's range
// replaces it, so for the generation to come round into a block still
// current, 2^38 checkouts in a row would have to run no work (only a
// caller that gives up as a slot reaches it runs none).
func (r *runner) ctxEntry(gen uint64) *execCtx {
	b := r.block.Load()
	if b != nil {
		if i := (gen - b.first) & genMask; i < execBlockLen {
			return &b.ctxs[i]
		}
	}
	nb := &execBlock{first: gen}
	r.block.CompareAndSwap(b, nb) // lost to another checkout's block: this one serves this checkout alone
	return &nb.ctxs[0]
}
