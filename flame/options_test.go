package flame

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Options apply in order, and of several of one kind the last one wins.
func TestLastOptionOfAKindWins(t *testing.T) {
	const wait, exec = 30 * time.Second, 10 * time.Second
	cases := []struct {
		name string
		opts []CallOption
		want callOpts
	}{
		{"none", nil, callOpts{wait: wait, exec: exec, link: true}},
		{"unlinked then linked", []CallOption{WithLink(false), WithLink(true)}, callOpts{wait: wait, exec: exec, link: true}},
		{"linked then unlinked", []CallOption{WithLink(true), WithLink(false)}, callOpts{wait: wait, exec: exec, link: false}},
		{"two timeouts", []CallOption{WithTimeout(time.Second), WithTimeout(time.Minute)}, callOpts{wait: time.Minute, exec: time.Minute, link: true}},
		{"timeout then zero: the defaults again", []CallOption{WithTimeout(time.Second), WithTimeout(0)}, callOpts{wait: wait, exec: exec, link: true}},
		{"zero value does nothing", []CallOption{WithTimeout(time.Second), {}}, callOpts{wait: time.Second, exec: time.Second, link: true}},
		{"kinds do not interfere", []CallOption{WithLink(false), WithTimeout(time.Second)}, callOpts{wait: time.Second, exec: time.Second, link: false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := merge(tc.opts, wait, exec)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// The same through a real call: WithLink(false), WithLink(true) leaves the
// call linked, so fn's ctx ends with the caller's.
func TestRelinkedCallFollowsCallerCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1})
		ctx, cancel := context.WithCancel(context.Background())
		started, fnSawCancel := make(chan struct{}), make(chan struct{})
		res := make(chan error, 1)
		go func() {
			res <- p.Call(ctx, func(fctx context.Context) error {
				close(started)
				select {
				case <-fctx.Done():
					close(fnSawCancel)
				case <-time.After(time.Hour): // unlinked: nothing ends fn's ctx
				}
				return fctx.Err()
			}, WithLink(false), WithLink(true))
		}()
		<-started
		cancel()
		synctest.Wait()
		require.True(t, callIsClosed(fnSawCancel), "fn's ctx did not follow the caller's: the call stayed unlinked")
		assert.ErrorIs(t, <-res, context.Canceled)
	})
}
