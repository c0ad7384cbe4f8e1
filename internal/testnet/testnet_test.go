//go:build linux

package testnet

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
	// The kernel may take a moment after the link comes up (carrier, and
	// the neighbour entry the cut left failed): the host reaches the
	// parent again within seconds, not necessarily on the first try.
	assert.Eventually(t, func() bool { return dial(nt.Hosts[0]) == nil }, 15*time.Second, 100*time.Millisecond,
		"a mended host reaches the parent again")
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

func TestPickOctetSkipsSubnetsInUse(t *testing.T) {
	used := map[int64]bool{}
	for o := int64(100); o < 200; o++ {
		used[o] = o != 150
	}
	o, err := pickOctet(used, 7)
	require.NoError(t, err)
	assert.Equal(t, int64(150), o, "the one free X")
	o, err = pickOctet(map[int64]bool{110: true}, 10)
	require.NoError(t, err)
	assert.Equal(t, int64(111), o, "from 100+from on")
	o, err = pickOctet(map[int64]bool{199: true}, 99)
	require.NoError(t, err)
	assert.Equal(t, int64(100), o, "wrapping around")
	used[150] = true
	_, err = pickOctet(used, 0)
	assert.Error(t, err)
}

// Nets made one after another while the first lives never share a subnet:
// the second sees the first's bridge address and picks another X.
func TestNetsNeverShareASubnet(t *testing.T) {
	require.NoError(t, Available())
	seen := map[string]bool{}
	for range 5 {
		nt, err := New(0)
		require.NoError(t, err)
		defer nt.Close()
		assert.False(t, seen[nt.ParentIP], "%s given twice", nt.ParentIP)
		seen[nt.ParentIP] = true
	}
}

// A net whose process died (killed before it could Close) is removed by
// the next New: its namespaces, its bridge and its record.
func TestNewRemovesNetsOfDeadProcesses(t *testing.T) {
	require.NoError(t, Available())
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	const prefix = "gfdead01"
	require.NoError(t, ip("link", "add", prefix+"br", "type", "bridge"))
	require.NoError(t, ip("netns", "add", prefix+"-h1"))
	t.Cleanup(func() { // in case the sweep did not
		_ = ip("netns", "del", prefix+"-h1")
		_ = ip("link", "del", prefix+"br")
	})
	require.NoError(t, os.MkdirAll(stateDir(), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(stateDir(), prefix), []byte(strconv.Itoa(dead.Process.Pid)), 0o600))

	nt, err := New(0)
	require.NoError(t, err)
	defer nt.Close()
	out, _ := exec.Command("ip", "netns", "list").Output()
	assert.NotContains(t, string(out), prefix+"-h1", "the dead net's namespace")
	assert.Error(t, ip("link", "show", prefix+"br"), "the dead net's bridge")
	assert.NoFileExists(t, filepath.Join(stateDir(), prefix))
	assert.FileExists(t, filepath.Join(stateDir(), nt.Prefix), "the live net's record")
	require.NoError(t, nt.Close())
	assert.NoFileExists(t, filepath.Join(stateDir(), nt.Prefix), "Close removes the record")
}
