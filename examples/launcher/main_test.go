package main

import (
	"os"
	"testing"

	"github.com/goflame/goflame/flame"
)

func TestMain(m *testing.M) {
	flame.Main()
	os.Exit(m.Run())
}

// The example's launcher boots a runner that dials back and serves.
func TestLauncherExampleRuns(t *testing.T) {
	main()
}
