package flame

// mainHint says what a program whose runner never says HELLO must do.
const mainHint = ": the program's main must call flame.Main() first, and a test binary that uses ProcessBackend needs func TestMain(m *testing.M) { flame.Main(); os.Exit(m.Run()) }"

// bootFailed marks a boot failure that retrying cannot fix (ErrBootFailed):
// the pool fails the callers waiting for it at once.
func bootFailed(err error) error { return &bootFailedError{err} }

type bootFailedError struct{ err error }

func (e *bootFailedError) Error() string   { return e.err.Error() }
func (e *bootFailedError) Unwrap() []error { return []error{ErrBootFailed, e.err} }
