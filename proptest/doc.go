// Package proptest checks the flame pool against a sequential reference
// model of docs/SPEC.md §3 (package proptest/model) with pgregory.net/rapid.
//
// The package holds only tests:
//
//   - TestPoolMatchesModel drives the real pool and the model through the
//     same random histories inside a testing/synctest bubble (virtual time;
//     "the pool has settled" is synctest.Wait) and compares, after every
//     step, Stats, the event log, which runner each call got, which waiters
//     were served, and every result.
//   - TestPoolInvariantsUnderConcurrency runs many goroutines against the
//     real pool (no model) and checks invariants that must hold under any
//     interleaving.
//
// See README.md for soak runs, replaying a failure, and the mutation script.
package proptest
