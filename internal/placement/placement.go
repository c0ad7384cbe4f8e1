// Package placement says where a pool looks first for a runner.
//
// A checkout takes a least-loaded runner. Which of several equally loaded
// ones it takes is decided here: first the caller's own runner (Caller),
// then one at random (Start), then the first least-loaded one from there,
// by ID, wrapping around. So callers on different cores land on different
// runners instead of all contending for one runner's cache line, and a
// caller that calls again finds its runner's word still in its core's
// cache. Tests that check placement against a model fix both positions
// with SetStart; nothing else does.
package placement

import (
	"math/rand/v2"
	"sync/atomic"
	"unsafe"
)

var start atomic.Pointer[func(n int) int]

// Start returns where a search over n > 0 runners begins: a position in
// [0, n).
func Start(n int) int {
	if f := start.Load(); f != nil {
		return (*f)(n) % n
	}
	// Lemire's multiply-shift: uniform enough for n ≪ 2³², no division.
	return int(uint64(rand.Uint32()) * uint64(n) >> 32)
}

// Caller returns a position in [0, n) that stays the same for one goroutine
// (mostly: it moves when the goroutine's stack does) and differs between
// goroutines: a hash of the address of a variable on the caller's stack.
// It costs a multiplication, where Start's random number costs a few
// nanoseconds.
func Caller(n int) int {
	if f := start.Load(); f != nil {
		return (*f)(n) % n
	}
	var anchor byte
	h := uint64(uintptr(unsafe.Pointer(&anchor))) * 0x9e3779b97f4a7c15 // Fibonacci hashing
	return int(h >> 32 * uint64(n) >> 32)
}

// SetStart makes Start and Caller return what f says (taken modulo n), in
// every pool of the process, until restore is called. For tests only.
func SetStart(f func(n int) int) (restore func()) {
	old := start.Swap(&f)
	return func() { start.Store(old) }
}
