package flame_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/goflame/goflame/flame"
)

// TestMain makes the test binary its own runner: a copy started by a
// ProcessBackend serves registered functions from flame.Main and exits. A
// copy started with GOFLAME_TEST_ROLE plays a helper (a parent that a test
// kills), where the platform's tests provide one.
func TestMain(m *testing.M) {
	flame.Main()
	if role := os.Getenv("GOFLAME_TEST_ROLE"); role != "" && helperMain != nil {
		os.Exit(helperMain(role))
	}
	goleak.VerifyTestMain(m) // and no test may leave a goroutine behind
}

// helperMain plays a GOFLAME_TEST_ROLE; set by the platform's tests.
var helperMain func(role string) int
