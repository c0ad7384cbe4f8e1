//go:build unix

package flame_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/flame"
)

// remotePool is a pool of runners that dial back over TCP and TLS; by
// default each runner is this test binary, started on this machine.
func remotePool(t *testing.T, cfg flame.Config, be *flame.RemoteBackend) *flame.Pool {
	t.Helper()
	logs := &capture{}
	if be.Launcher == nil {
		be.Launcher = flame.CommandLauncher{Env: []string{raceQuickExit()}}
	}
	if be.Logger == nil {
		be.Logger = slog.New(logs)
	}
	cfg.Backend = be
	if cfg.Name == "" {
		cfg.Name = "remote"
	}
	if cfg.Max == 0 {
		cfg.Max = 2
	}
	if cfg.BootTimeout == 0 {
		cfg.BootTimeout = 20 * time.Second
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = be.Logger
	}
	p, err := flame.NewPool(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		assert.NoError(t, p.Close(ctx))
		waitNoChildren(t, 10*time.Second)
	})
	return p
}

func TestRemoteRunnerOverLoopbackServesCalls(t *testing.T) {
	be := &flame.RemoteBackend{}
	p := remotePool(t, flame.Config{Max: 1}, be)
	out, err := echoFn.Call(context.Background(), p, echoIn{Name: "tls", Nums: []int{1, 2}})
	require.NoError(t, err)
	assert.Equal(t, "hello, tls", out.Greeting)
	assert.Equal(t, 3, out.Sum)
	assert.NotEqual(t, 0, out.PID)
}
