//go:build !race

package proptest

// raceEnabled: built with -race.
const raceEnabled = false
