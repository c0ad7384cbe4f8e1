// Package goflame is the root of the goflame module, a Go take on FLAME
// (github.com/phoenixframework/flame): wrap a block of work in a call, and a
// pool finds or boots a runner, runs the work there and returns the result.
// The pool grows on demand up to a maximum and shrinks back when idle, down
// to zero, so heavy jobs (video, ML, batch) need no queue infrastructure.
//
// Where to start:
//
//   - Package flame (github.com/goflame/goflame/flame) is the library:
//     Pool, Call, Cast, PlaceChild, Resize, Stats, Close, and the Backend and
//     Node interfaces that runners plug into. LocalBackend runs work in
//     process.
//   - bench/ measures the pool against the designs a Go user would pick
//     instead (`go run ./bench`).
//   - proptest/ checks the pool against a sequential reference model of its
//     contract with rapid property tests.
//
// This package holds no code.
package goflame
