//go:build linux

// Package testnet builds small networks of hosts on one Linux machine for
// tests and benchmarks: network namespaces joined by veth pairs to a
// bridge in the caller's namespace, which holds the parent's address.
// Only the addresses inside these namespaces are ever used. It needs root
// and iproute2's ip(8).
package testnet

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os/exec"
	"strings"
	"sync"
)

// Net is a bridge in this namespace and the hosts attached to it.
type Net struct {
	Prefix   string // names of everything this Net made start with it
	ParentIP string // this namespace's address on the bridge
	Hosts    []Host // guarded by mu while Add or Remove may run
	bridge   string
	octet    int64

	mu    sync.Mutex
	added int
}

// Host is one network namespace attached to the bridge.
type Host struct {
	NS   string // the namespace's name
	IP   string // its address
	link string // the veth end in this namespace: taking it down cuts the host off
}

// Available says why the machine cannot build a Net (not root, no ip), or
// nil.
func Available() error {
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("testnet: ip(8) not found: install iproute2")
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		return fmt.Errorf("testnet: ip netns: %v: %s", err, out)
	}
	return nil
}

// New makes a bridge and n hosts on 10.X.0.0/16 (X random): the caller is
// 10.X.0.1, the hosts 10.X.0.2 and on. Close removes all of it.
func New(n int) (_ *Net, err error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	x, err := rand.Int(rand.Reader, big.NewInt(100))
	if err != nil {
		return nil, err
	}
	octet := 100 + x.Int64()
	nt := &Net{Prefix: "gf" + hex.EncodeToString(b[:]), ParentIP: fmt.Sprintf("10.%d.0.1", octet)}
	nt.bridge = nt.Prefix + "br"
	defer func() {
		if err != nil {
			nt.Close()
		}
	}()
	if err := ip("link", "add", nt.bridge, "type", "bridge"); err != nil {
		return nil, err
	}
	if err := ip("addr", "add", nt.ParentIP+"/16", "dev", nt.bridge); err != nil {
		return nil, err
	}
	if err := ip("link", "set", nt.bridge, "up"); err != nil {
		return nil, err
	}
	nt.octet = octet
	for range n {
		if _, err := nt.Add(); err != nil {
			return nil, err
		}
	}
	return nt, nil
}

// Add makes one more host, 10.X.i.j on the bridge, and returns it.
func (n *Net) Add() (Host, error) {
	n.mu.Lock()
	n.added++
	i := n.added
	n.mu.Unlock()
	if i > 250*250 {
		return Host{}, errors.New("testnet: out of addresses")
	}
	h := Host{NS: fmt.Sprintf("%s-h%d", n.Prefix, i), IP: fmt.Sprintf("10.%d.%d.%d", n.octet, (i+1)/250, (i+1)%250+1), link: fmt.Sprintf("%sa%d", n.Prefix, i)}
	peer := fmt.Sprintf("%sb%d", n.Prefix, i)
	n.mu.Lock()
	n.Hosts = append(n.Hosts, h)
	n.mu.Unlock()
	steps := [][]string{
		{"netns", "add", h.NS},
		{"link", "add", h.link, "type", "veth", "peer", "name", peer},
		{"link", "set", peer, "netns", h.NS},
		{"link", "set", h.link, "master", n.bridge},
		{"link", "set", h.link, "up"},
		{"-n", h.NS, "addr", "add", h.IP + "/16", "dev", peer},
		{"-n", h.NS, "link", "set", peer, "up"},
		{"-n", h.NS, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return h, err
		}
	}
	return h, nil
}

// Remove removes host h (its namespace and link).
func (n *Net) Remove(h Host) error {
	n.mu.Lock()
	for i, x := range n.Hosts {
		if x.NS == h.NS {
			n.Hosts = append(n.Hosts[:i], n.Hosts[i+1:]...)
			break
		}
	}
	n.mu.Unlock()
	err := ip("netns", "del", h.NS)
	_ = ip("link", "del", h.link)
	return err
}

// Close removes the hosts and the bridge.
func (n *Net) Close() error {
	var errs []error
	n.mu.Lock()
	hosts := append([]Host(nil), n.Hosts...)
	n.mu.Unlock()
	for _, h := range hosts {
		if err := ip("netns", "del", h.NS); err != nil && !strings.Contains(err.Error(), "No such file") {
			errs = append(errs, err)
		}
		_ = ip("link", "del", h.link) // gone with its namespace's end, normally
	}
	if n.bridge != "" {
		if err := ip("link", "del", n.bridge); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Command returns the command line that runs path with args in h.
func (h Host) Command(path string, args ...string) (string, []string) {
	return "ip", append([]string{"netns", "exec", h.NS, path}, args...)
}

// Cut takes h's link down: nothing reaches it and nothing leaves it, as
// when a network partitions (no reset, no FIN: silence).
func (h Host) Cut() error { return ip("link", "set", h.link, "down") }

// Mend brings h's link up again.
func (h Host) Mend() error { return ip("link", "set", h.link, "up") }

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
