package flame

import "context"

// Child is work placed on a runner with PlaceChild.
type Child struct {
	c        *execCtx
	runnerID uint64
	done     chan struct{}
	err      error // written before done is closed
}

// Done is closed when the child's fn has returned.
func (c *Child) Done() <-chan struct{} { return c.done }

// Err is the child's result (as for Call, without an execution limit); nil
// before Done.
func (c *Child) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Stop cancels the child's ctx and waits for its fn to return.
func (c *Child) Stop() {
	c.c.cancel(context.Canceled, nil)
	<-c.done
}

// RunnerID is the ID of the runner the child runs on.
func (c *Child) RunnerID() uint64 { return c.runnerID }
