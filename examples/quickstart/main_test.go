package main

import "testing"

// The README's first example runs.
func TestQuickstartRuns(t *testing.T) {
	main()
}
