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
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Net is a bridge in this namespace and the hosts attached to it.
type Net struct {
	Prefix   string // names of everything this Net made start with it
	ParentIP string // this namespace's address on the bridge
	Hosts    []Host // guarded by mu while Add or Remove may run
	bridge   string
	octet    int64
	owned    bool // recorded in stateDir: Close removes the record

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

// New makes a bridge and n hosts on 10.X.0.0/16: the caller is 10.X.0.1,
// the hosts 10.X.0.2 and on. X is one that no address of this machine is
// in, chosen under a machine-wide lock, so that nets made at once by test
// binaries running side by side, or left behind by one that was killed,
// never share a subnet (a shared one routes a host's packets to the wrong
// bridge). Nets whose process has died are removed first. Close removes all
// of it.
func New(n int) (_ *Net, err error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	nt := &Net{Prefix: "gf" + hex.EncodeToString(b[:])}
	nt.bridge = nt.Prefix + "br"
	defer func() {
		if err != nil {
			nt.Close()
		}
	}()
	if err := nt.claimSubnet(); err != nil {
		return nil, err
	}
	for range n {
		if _, err := nt.Add(); err != nil {
			return nil, err
		}
	}
	return nt, nil
}

// claimSubnet makes the bridge on a free 10.X.0.0/16 and records the net
// as this process's, all under the machine-wide lock.
func (n *Net) claimSubnet() error {
	unlock, err := lockMachine()
	if err != nil {
		return err
	}
	defer unlock()
	sweepDead()
	octet, err := freeOctet()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(stateDir(), n.Prefix), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return err
	}
	n.owned = true
	n.ParentIP = fmt.Sprintf("10.%d.0.1", octet)
	if err := ip("link", "add", n.bridge, "type", "bridge"); err != nil {
		return err
	}
	if err := ip("addr", "add", n.ParentIP+"/16", "dev", n.bridge); err != nil {
		return err
	}
	if err := ip("link", "set", n.bridge, "up"); err != nil {
		return err
	}
	n.octet = octet
	return nil
}

// stateDir holds the lock and one file per live net, naming its process.
func stateDir() string { return filepath.Join(os.TempDir(), "goflame-testnet") }

// lockMachine takes the machine-wide lock (flock on a file in stateDir).
func lockMachine() (unlock func(), err error) {
	if err := os.MkdirAll(stateDir(), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(stateDir(), "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// freeOctet returns an X in [100, 200) such that no address of this
// machine is in 10.X.0.0/16.
func freeOctet() (int64, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return 0, err
	}
	used := map[int64]bool{}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if v4 := ipn.IP.To4(); v4 != nil && v4[0] == 10 {
				used[int64(v4[1])] = true
			}
		}
	}
	x, err := rand.Int(rand.Reader, big.NewInt(100))
	if err != nil {
		return 0, err
	}
	return pickOctet(used, x.Int64())
}

// pickOctet returns the first X in [100, 200) not in used, looking from
// 100+from on and wrapping around.
func pickOctet(used map[int64]bool, from int64) (int64, error) {
	for i := range int64(100) {
		if o := 100 + (from+i)%100; !used[o] {
			return o, nil
		}
	}
	return 0, errors.New("testnet: no free 10.X.0.0/16 for X in [100, 200)")
}

// sweepDead removes the nets whose process is gone: a test binary that was
// killed cannot Close its own. Requires the machine-wide lock.
func sweepDead() {
	entries, err := os.ReadDir(stateDir())
	if err != nil {
		return
	}
	var spaces []string
	for _, e := range entries {
		prefix := e.Name()
		if !strings.HasPrefix(prefix, "gf") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(stateDir(), prefix))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue // alive (or not ours to judge)
		}
		if spaces == nil {
			out, _ := exec.Command("ip", "netns", "list").Output()
			spaces = strings.Split(string(out), "\n")
		}
		for _, line := range spaces {
			if ns, _, _ := strings.Cut(line, " "); strings.HasPrefix(ns, prefix+"-") {
				_ = ip("netns", "del", ns) // takes the host's end of its veth pair, and so the pair
			}
		}
		_ = ip("link", "del", prefix+"br")
		os.Remove(filepath.Join(stateDir(), prefix))
	}
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
	if n.owned {
		os.Remove(filepath.Join(stateDir(), n.Prefix))
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
