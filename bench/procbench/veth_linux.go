//go:build linux

package main

import (
	"github.com/goflame/goflame/flame"
	"github.com/goflame/goflame/internal/testnet"
)

// vethTransport is TCP and TLS over a veth link: the runner (runnerPath
// with runnerArgs) runs in a network namespace of its own, and dials the
// parent across the link.
func vethTransport(runnerPath string, runnerArgs []string) (*transport, error) {
	if err := testnet.Available(); err != nil {
		return nil, err
	}
	nt, err := testnet.New(1)
	if err != nil {
		return nil, err
	}
	path, args := nt.Hosts[0].Command(runnerPath, runnerArgs...)
	return &transport{name: "tls-veth", close: func() { nt.Close() }, backend: func() flame.Backend {
		return &flame.RemoteBackend{Listen: nt.ParentIP + ":0", Launcher: flame.CommandLauncher{Path: path, Args: args, Env: runnerEnv}, Logger: quiet}
	}}, nil
}
