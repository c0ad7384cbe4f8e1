package proptest

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/goflame/goflame/proptest/model"
)

// Defaults for CI. They apply unless -rapid.checks / -rapid.steps (or
// RAPID_CHECKS / RAPID_STEPS) say otherwise; -short divides the checks by 5.
const (
	defaultChecks = "300"
	defaultSteps  = "60"
	// defaultRaceChecks is the concurrency test's default under -race: Go
	// 1.26's race runtime crashes now and then (a ThreadSanitizer CHECK or a
	// SIGSEGV in its StackDepot, golang/go#78156) when many goroutines of a
	// synctest bubble run at once; here about once in 10,000 checks.
	defaultRaceChecks = "100"
)

// checksSet records whether the user chose the number of checks.
var checksSet bool

// tolerateEnv names known pool bugs to let pass, comma-separated: the model
// copies them (model.Tolerances), or the invariant test accepts them, so
// that the suite can look for other bugs while those are open. Unset: the
// model is the contract. It is an environment variable, not a flag, so that
// it works with ./proptest/... (a flag would be unknown to the packages that
// do not define it).
const tolerateEnv = "PROPTEST_TOLERATE"

// tolerances parses $PROPTEST_TOLERATE (lazy-boot-cancel, min-retry,
// done-double-close, or all): the model's tolerances, and
// whether a fn that first asks for ctx.Done() after its ctx was cancelled
// may "panic" with "close of closed channel" (see
// TestFnAsksForDoneAfterItsCtxEnded).
func tolerances() (t model.Tolerances, doneDoubleClose bool) {
	for _, name := range strings.Split(os.Getenv(tolerateEnv), ",") {
		switch strings.TrimSpace(name) {
		case "":
		case "all":
			t = model.Tolerances{LazyBootCancel: true, MinRetry: true}
			doneDoubleClose = true
		case "lazy-boot-cancel":
			t.LazyBootCancel = true
		case "min-retry":
			t.MinRetry = true
		case "done-double-close":
			doneDoubleClose = true
		default:
			panic(fmt.Sprintf("%s: unknown name %q", tolerateEnv, name))
		}
	}
	return t, doneDoubleClose
}

func TestMain(m *testing.M) {
	flag.Parse()
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, def := range map[string]string{"rapid.checks": defaultChecks, "rapid.steps": defaultSteps} {
		env := map[string]string{"rapid.checks": "RAPID_CHECKS", "rapid.steps": "RAPID_STEPS"}[name]
		if _, ok := os.LookupEnv(env); !set[name] && !ok {
			if err := flag.Set(name, def); err != nil {
				panic(err)
			}
		} else if name == "rapid.checks" {
			checksSet = true
		}
	}
	goleak.VerifyTestMain(m)
}
