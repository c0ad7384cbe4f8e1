package main

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/flame"
)

// TestMain makes the test binary its own runner and its own baseline
// child.
func TestMain(m *testing.M) {
	if serveChild() {
		return
	}
	flame.Main()
	os.Exit(m.Run())
}

// BenchmarkPayload is the sweep as Go benchmarks: an echo of each size
// through each implementation, 4 callers at once (MB/s is each way).
func BenchmarkPayload(b *testing.B) {
	for _, size := range sizes {
		for _, name := range impls {
			b.Run("size="+strings.ReplaceAll(sizeName(size), " ", "")+"/impl="+name, func(b *testing.B) {
				call, closeFn, err := setup(name)
				require.NoError(b, err)
				defer closeFn()
				payload := make([]byte, size)
				require.NoError(b, call(payload))
				b.SetBytes(int64(size))
				b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := call(payload); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
