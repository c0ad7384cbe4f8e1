package proptest

import (
	"flag"
	"os"
	"testing"

	"go.uber.org/goleak"
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
