//go:build unix

package flame_test

import (
	"context"
	"fmt"
	"os"

	"github.com/goflame/goflame/flame"
)

// pidOf returns the pid of the runner process that serves it.
var pidOf = flame.Register("example.pid", func(ctx context.Context, _ struct{}) (int, error) {
	return os.Getpid(), nil
})

// A program that uses ProcessBackend calls flame.Main first in main (and a
// test binary in TestMain, as this package's does): a copy started as a
// runner then serves registered functions instead of running the program.
func ExampleProcessBackend() {
	pool, err := flame.NewPool(flame.Config{Max: 2, MaxConcurrency: 4, Backend: flame.ProcessBackend{}})
	if err != nil {
		panic(err)
	}
	defer pool.Close(context.Background())

	s, err := greet.Call(context.Background(), pool, "runner")
	fmt.Println(s, err)
	pid, err := pidOf.Call(context.Background(), pool, struct{}{})
	fmt.Println("in another process:", err == nil && pid != os.Getpid())
	// Output:
	// hello, runner <nil>
	// in another process: true
}
