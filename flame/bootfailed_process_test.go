//go:build unix

package flame_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/flame"
)

// Boots that cannot succeed fail fast: the caller gets an error matching
// ErrBootFailed, wrapping the reason and saying what to do, long before
// BootTimeout, and no retry follows.
func TestProcessBootsThatCannotSucceedFailFast(t *testing.T) {
	slowInShort(t)
	sh, err := exec.LookPath("sh")
	require.NoError(t, err)
	notExec := filepath.Join(t.TempDir(), "app")
	require.NoError(t, os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644))
	cases := []struct {
		name string
		be   flame.ProcessBackend
		want []string // in the message
		is   error
	}{
		{"missing executable", flame.ProcessBackend{Path: "/nonexistent/app"}, []string{"/nonexistent/app"}, os.ErrNotExist},
		{"not executable", flame.ProcessBackend{Path: notExec}, []string{notExec}, os.ErrPermission},
		{"exits before its handshake", flame.ProcessBackend{Path: sh, Args: []string{"-c", "echo forgot flame.Main >&2; exit 3"}},
			[]string{"exit status 3", "flame.Main()", "TestMain", "forgot flame.Main"}, nil},
		{"version skew", flame.ProcessBackend{Env: []string{"GOFLAME_TEST_EXTRA=1", raceQuickExit()}},
			[]string{"must register the same functions"}, flame.ErrVersionSkew},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var boots atomic.Int32
			tc.be.Logger = slog.New(&capture{})
			p, err := flame.NewPool(flame.Config{Max: 2, BootTimeout: time.Minute, Backend: tc.be, Logger: tc.be.Logger,
				OnGrowStart: func(flame.GrowEvent) { boots.Add(1) }})
			require.NoError(t, err)
			defer p.Close(context.Background())
			start := time.Now()
			_, err = pidFn.Call(context.Background(), p, struct{}{})
			took := time.Since(start)
			require.ErrorIs(t, err, flame.ErrBootFailed)
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
			for _, s := range tc.want {
				assert.Contains(t, err.Error(), s)
			}
			assert.Less(t, took, 20*time.Second, "the caller waited for BootTimeout")
			assert.Zero(t, p.Stats().Waiting)
			time.Sleep(1500 * time.Millisecond) // a retry would have come by now
			assert.Equal(t, int32(1), boots.Load(), "a failure that retrying cannot fix was retried")
			waitNoChildren(t, 5*time.Second)
		})
	}
}

// A runner that is slow to start is not a permanent failure: the boot
// times out and is retried as before.
func TestProcessBootTimeoutIsNotPermanent(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	require.NoError(t, err)
	_, err = flame.NewPool(flame.Config{Min: 1, Max: 1, BootTimeout: 300 * time.Millisecond,
		Backend: flame.ProcessBackend{Path: sleep, Args: []string{"60"}, Logger: slog.New(&capture{})}})
	require.Error(t, err)
	assert.False(t, errors.Is(err, flame.ErrBootFailed), "a slow runner may come up next time: %v", err)
	waitNoChildren(t, 5*time.Second)
}
