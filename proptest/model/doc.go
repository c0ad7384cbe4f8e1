// Package model is a sequential reference model of the goflame pool: the
// behaviour of docs/SPEC.md §3, written as plain single-threaded Go so that it
// can be read as the specification and run as an oracle.
//
// There are no goroutines, locks or clocks here. Time is a number (Now), and
// it moves only when the driver calls Advance; every timer of the pool (a
// checkout wait, an execution limit, an idle period, a boot retry, a boot's
// BootTimeout, Close's deadline) is a field holding the instant it fires.
// Everything else is a method named for what happens in the pool's world:
// Start (a caller calls Call, Cast or PlaceChild), Finish (fn returns nil),
// Cancel (the caller's ctx is cancelled), CompleteBoot, FailBoot, Crash,
// Resize, Close. Each method applies one transition and then settles the pool
// the way the scaler does after every change (evaluate, below).
//
// Where the contract is silent the model follows goflame's documented
// reading of it (package flame's doc comments and the README), and where
// that is silent too it follows the implementation; those places say so in
// their doc comments ("implementation:").
//
// Files, one concern each:
//
//	model.go    the state, New, Clone, Stats, Events
//	work.go     Call, Cast and PlaceChild from start to result (SPEC §3.3–3.5)
//	checkout.go claiming a slot, the FIFO queue, release and handoff (SPEC §3.2, §3.8)
//	scaler.go   the boot rule, boots, failures and retries (SPEC §3.2, §3.6, §3.9)
//	idle.go     idle periods and idle shutdown (SPEC §3.7)
//	runner.go   runners, crashes and removal (SPEC §3.9, §3.13)
//	resize.go   Resize (SPEC §3.11)
//	close.go    Close (SPEC §3.12)
//	clock.go    Advance: firing timers in order (and spotting ties)
//	events.go   OnGrowStart, OnGrowEnd and OnShrink (SPEC §3.10)
//
// Ties. The real pool runs in a testing/synctest bubble, where timers that
// fire at the same virtual instant wake goroutines that then race, and an
// execution limit may end up to Config.ClockSlack early (the pool's coarse
// clock). When two timers that could interact may fire in either order, or
// one may fire before or after the instant at which the driver looks, the
// outcome is not fixed. Advance notices such cases and records them
// (Ambiguity); a test driver then discards the step instead of comparing a
// nondeterministic result.
package model
