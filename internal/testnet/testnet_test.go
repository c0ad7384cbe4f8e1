//go:build linux

package testnet

import (
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A host reaches the parent's address over the bridge, and Cut silences it.
func TestHostsReachTheParentUntilCut(t *testing.T) {
	require.NoError(t, Available())
	nt, err := New(2)
	require.NoError(t, err)
	defer func() { assert.NoError(t, nt.Close()) }()
	ln, err := net.Listen("tcp", nt.ParentIP+":0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	dial := func(h Host) error { // bash's /dev/tcp, from inside the host
		return exec.Command("ip", "netns", "exec", h.NS, "timeout", "2", "bash", "-c", "exec 3<>/dev/tcp/"+nt.ParentIP+"/"+port).Run()
	}
	for _, h := range nt.Hosts {
		assert.NoError(t, dial(h), "host %s", h.NS)
	}
	require.NoError(t, nt.Hosts[0].Cut())
	assert.Error(t, dial(nt.Hosts[0]), "a cut host still reaches the parent")
	assert.NoError(t, dial(nt.Hosts[1]))
	require.NoError(t, nt.Hosts[0].Mend())
	assert.NoError(t, dial(nt.Hosts[0]), "a mended host reaches the parent again")
	out, _ := exec.Command("ip", "netns", "list").Output()
	assert.True(t, strings.Contains(string(out), nt.Hosts[0].NS))
}

// Add makes hosts with addresses of their own while others run, and Remove
// takes one away, namespace and all.
func TestAddAndRemoveHosts(t *testing.T) {
	require.NoError(t, Available())
	nt, err := New(0)
	require.NoError(t, err)
	defer func() { assert.NoError(t, nt.Close()) }()
	hosts := make(chan Host, 4)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			h, err := nt.Add()
			hosts <- h
			errs <- err
		}()
	}
	ips := map[string]bool{}
	var added []Host
	for range 4 {
		require.NoError(t, <-errs)
		h := <-hosts
		ips[h.IP] = true
		added = append(added, h)
	}
	assert.Len(t, ips, 4, "every host has its own address")
	assert.NotContains(t, ips, nt.ParentIP)
	require.NoError(t, nt.Remove(added[0]))
	out, err := exec.Command("ip", "netns", "list").Output()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names[f[0]] = true
		}
	}
	assert.NotContains(t, names, added[0].NS)
	assert.Contains(t, names, added[1].NS)
	assert.Len(t, nt.Hosts, 3)
}
