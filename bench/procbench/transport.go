package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/goflame/goflame/flame"
)

// transport is one way to reach a runner process, as a backend.
type transport struct {
	name    string
	backend func() flame.Backend
	close   func()
}

// pool is one runner over t with room for every caller, warmed up.
func (t *transport) pool() (*flame.Pool, error) {
	return flame.NewPool(flame.Config{
		Name: "bench-" + t.name, Min: 1, Max: 1, MaxConcurrency: 256, BootTimeout: 30 * time.Second,
		Backend: t.backend(), Logger: quiet,
	})
}

// transportNames are the transports, in table order.
var transportNames = []string{"socketpair", "tls-loopback", "tls-veth"}

// transports makes the transports named in list (comma-separated; "":
// every one this machine can run, tls-veth only with root and ip(8)).
func transports(list string) ([]*transport, error) {
	names := transportNames
	explicit := list != ""
	if explicit {
		names = strings.Split(list, ",")
	}
	var ts []*transport
	for _, n := range names {
		t, err := makeTransport(n)
		if err != nil {
			if explicit || n != "tls-veth" {
				for _, t := range ts {
					t.close()
				}
				return nil, fmt.Errorf("transport %s: %w", n, err)
			}
			fmt.Fprintf(os.Stderr, "(tls-veth left out: %v)\n", err)
			continue
		}
		ts = append(ts, t)
	}
	return ts, nil
}

func makeTransport(name string) (*transport, error) {
	if !slices.Contains(transportNames, name) {
		return nil, fmt.Errorf("unknown transport %q (want one of %s)", name, strings.Join(transportNames, ", "))
	}
	path, args, err := runnerCommand()
	if err != nil {
		return nil, err
	}
	switch name {
	case "socketpair":
		return &transport{name: name, close: func() {},
			backend: func() flame.Backend {
				return flame.ProcessBackend{Path: path, Args: args, Logger: quiet, Env: runnerEnv}
			}}, nil
	case "tls-loopback":
		return &transport{name: name, close: func() {}, backend: func() flame.Backend {
			return &flame.RemoteBackend{Launcher: flame.CommandLauncher{Path: path, Args: args, Env: runnerEnv}, Logger: quiet}
		}}, nil
	}
	return vethTransport(path, args)
}
