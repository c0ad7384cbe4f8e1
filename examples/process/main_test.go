package main

import (
	"os"
	"testing"

	"github.com/goflame/goflame/flame"
)

// A test binary whose code uses ProcessBackend is its own runner, so its
// TestMain calls flame.Main first, as main does.
func TestMain(m *testing.M) {
	flame.Main()
	os.Exit(m.Run())
}

// The README's example runs: a tile renders in a runner process.
func TestExampleRendersInARunnerProcess(t *testing.T) {
	main()
}
