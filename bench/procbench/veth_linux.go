//go:build linux

package main

import (
	"os"

	"github.com/goflame/goflame/flame"
	"github.com/goflame/goflame/internal/testnet"
)

// vethTransport is TCP and TLS over a veth link: the runner runs in a
// network namespace of its own, and dials the parent across the link.
func vethTransport() (*transport, error) {
	if err := testnet.Available(); err != nil {
		return nil, err
	}
	nt, err := testnet.New(1)
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		nt.Close()
		return nil, err
	}
	path, args := nt.Hosts[0].Command(exe)
	return &transport{name: "tls-veth", close: func() { nt.Close() }, backend: func() flame.Backend {
		return &flame.RemoteBackend{Listen: nt.ParentIP + ":0", Launcher: flame.CommandLauncher{Path: path, Args: args, Env: runnerEnv}, Logger: quiet}
	}}, nil
}
