//go:build linux

package flame_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/flame"
	"github.com/goflame/goflame/internal/testnet"
)

// netAddrs reports the runner's IPv4 addresses: which host it runs on.
var netAddrs = flame.Register("test.netaddrs", func(ctx context.Context, _ struct{}) ([]string, error) {
	return ipv4Addrs()
})

// hostAddrs is netAddrs after a pause of the given length, so that calls
// made together need a runner each.
var hostAddrs = flame.Register("test.netaddrs.after", func(ctx context.Context, d time.Duration) ([]string, error) {
	time.Sleep(d)
	return ipv4Addrs()
})

func ipv4Addrs() ([]string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			out = append(out, ipn.IP.String())
		}
	}
	return out, nil
}

// hosts makes a network of n hosts (network namespaces on a bridge) for
// the test, and removes it afterwards. It needs root and ip(8), as CI has;
// GOFLAME_NO_NETNS=1 skips these tests where they cannot run.
func hosts(t *testing.T, n int) *testnet.Net {
	t.Helper()
	if os.Getenv("GOFLAME_NO_NETNS") == "1" {
		t.Skip("GOFLAME_NO_NETNS=1")
	}
	require.NoError(t, testnet.Available(), "network namespaces are needed (root and iproute2; set GOFLAME_NO_NETNS=1 to skip)")
	nt, err := testnet.New(n)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, nt.Close()) })
	return nt
}

// hostLauncher launches each runner on the next host, round robin, as this
// test binary run in the host's namespace.
type hostLauncher struct {
	nt   *testnet.Net
	next atomic.Int64
	// detached: no parent-death signal, so that a runner whose parent dies
	// has only the network to tell it (as on another machine).
	detached bool
}

func (l *hostLauncher) Launch(ctx context.Context, spec flame.LaunchSpec) (flame.Instance, error) {
	h := l.nt.Hosts[int(l.next.Add(1)-1)%len(l.nt.Hosts)]
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	path, args := h.Command(exe)
	if l.detached {
		return detachedLaunch(path, args, spec)
	}
	return flame.CommandLauncher{Path: path, Args: args, Env: []string{raceQuickExit()}}.Launch(ctx, spec)
}

// detachedLaunch runs a command in a process group of its own with no
// parent-death signal.
func detachedLaunch(path string, args []string, spec flame.LaunchSpec) (flame.Instance, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = append(append(os.Environ(), raceQuickExit()), spec.Env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &detached{cmd: cmd, gone: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		close(d.gone)
	}()
	return d, nil
}

type detached struct {
	cmd  *exec.Cmd
	gone chan struct{}
	err  error
}

func (d *detached) Gone() <-chan struct{} { return d.gone }
func (d *detached) Err() error {
	select {
	case <-d.gone:
		return d.err
	default:
		return nil
	}
}

// Remove only waits: a detached runner must exit by itself.
func (d *detached) Remove(ctx context.Context) error {
	select {
	case <-d.gone:
		return nil
	case <-ctx.Done():
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.gone
		return fmt.Errorf("the runner did not exit by itself: %w", ctx.Err())
	}
}

// Runners on other hosts reach the parent over the network, and the pool
// scales from zero to a runner per host and back to zero.
func TestRemoteRunnersOnOtherHosts(t *testing.T) {
	slowInShort(t)
	nt := hosts(t, 2)
	be := &flame.RemoteBackend{Listen: nt.ParentIP + ":0", Launcher: &hostLauncher{nt: nt}}
	p, _ := remotePool(t, flame.Config{Max: 2, MaxConcurrency: 1, IdleShutdownAfter: 300 * time.Millisecond}, be)
	want := map[string]bool{}
	for _, h := range nt.Hosts {
		want[h.IP] = true
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string]bool{}
	for range 2 {
		wg.Go(func() {
			addrs, err := hostAddrs.Call(context.Background(), p, 300*time.Millisecond)
			if assert.NoError(t, err) && assert.Len(t, addrs, 1) {
				mu.Lock()
				got[addrs[0]] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	assert.Equal(t, want, got, "two calls at once ran on a runner on each host")
	assert.Eventually(t, func() bool { return p.Stats().Runners == 0 && be.ListenAddr() == "" }, 10*time.Second, 20*time.Millisecond,
		"back to zero runners and no listener")
}

// A partition: a runner's network cut mid-call gives the caller
// ErrRunnerDown within max(3×KeepAlive, 1s) and a little, the cut-off
// runner exits on its own side, and the pool serves again from another
// host.
func TestRemotePartitionMidCall(t *testing.T) {
	slowInShort(t)
	nt := hosts(t, 2)
	be := &flame.RemoteBackend{Listen: nt.ParentIP + ":0", Launcher: &hostLauncher{nt: nt, detached: true}, KeepAlive: 250 * time.Millisecond}
	p, _ := remotePool(t, flame.Config{Max: 1, MaxConcurrency: 1, ShutdownTimeout: 10 * time.Second}, be)
	pid, errc := blockInBackground(t, p)
	cut := time.Now()
	require.NoError(t, nt.Hosts[0].Cut()) // the first runner went to host 1
	select {
	case err := <-errc:
		took := time.Since(cut)
		require.ErrorIs(t, err, flame.ErrRunnerDown)
		assert.Less(t, took, time.Second+time.Second, "ErrRunnerDown took %v after the cut; the keepalive timeout is 1s", took)
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the call did not fail after its runner's network was cut")
	}
	assert.Eventually(t, func() bool { return gone(pid) }, 8*time.Second, 20*time.Millisecond,
		"the cut-off runner did not exit on its own")
	// The pool replaces it, on the other host.
	addrs, err := netAddrs.Call(context.Background(), p, struct{}{}, flame.WithTimeout(20*time.Second))
	require.NoError(t, err)
	assert.Equal(t, []string{nt.Hosts[1].IP}, addrs)
}

// Kill the parent: every runner, on its own host with no parent-death
// signal, exits within a few seconds (it loses its connection, or hears
// nothing for its keepalive timeout).
func TestRemoteRunnersDieWithTheirParent(t *testing.T) {
	nt := hosts(t, 2)
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "GOFLAME_TEST_ROLE=remoteparent", "GOFLAME_TEST_NET="+strings.Join(netSpec(nt), ","), raceQuickExit())
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line := make(chan string, 1)
	go func() {
		b := make([]byte, 256)
		n, _ := out.Read(b)
		line <- strings.TrimSpace(string(b[:n]))
	}()
	var pids []int
	select {
	case l := <-line:
		f := strings.Fields(strings.TrimPrefix(l, "runners "))
		for _, s := range f {
			pid, err := strconv.Atoi(s)
			require.NoError(t, err)
			pids = append(pids, pid)
		}
	case <-time.After(30 * time.Second):
		require.FailNow(t, "the helper parent did not start its runners")
	}
	require.Len(t, pids, 2)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	for _, pid := range pids {
		assert.Eventually(t, func() bool { return gone(pid) }, 10*time.Second, 20*time.Millisecond,
			"runner %d outlived its parent", pid)
	}
}

// netSpec and netFrom pass a Net's namespaces to a helper process.
func netSpec(nt *testnet.Net) []string {
	s := []string{nt.ParentIP}
	for _, h := range nt.Hosts {
		s = append(s, h.NS)
	}
	return s
}

// playRemoteParent is the helper role "remoteparent": a parent with a
// runner on each host of GOFLAME_TEST_NET, detached, which prints their
// pids and waits to be killed.
func playRemoteParent() int {
	spec := strings.Split(os.Getenv("GOFLAME_TEST_NET"), ",")
	nt := &testnet.Net{ParentIP: spec[0]}
	for _, ns := range spec[1:] {
		nt.Hosts = append(nt.Hosts, testnet.Host{NS: ns})
	}
	rec := &pidLauncher{inner: &hostLauncher{nt: nt, detached: true}}
	p, err := flame.NewPool(flame.Config{Name: "helper", Min: 2, Max: 2, BootTimeout: 20 * time.Second,
		Backend: &flame.RemoteBackend{Listen: nt.ParentIP + ":0", Launcher: rec, KeepAlive: 200 * time.Millisecond}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	defer p.Close(context.Background())
	fmt.Println("runners " + strings.Join(rec.pids(), " "))
	time.Sleep(time.Minute)
	return 0
}

// pidLauncher records the pids of the detached runners it launches.
type pidLauncher struct {
	inner *hostLauncher
	mu    sync.Mutex
	ids   []string
}

func (l *pidLauncher) Launch(ctx context.Context, spec flame.LaunchSpec) (flame.Instance, error) {
	inst, err := l.inner.Launch(ctx, spec)
	if d, ok := inst.(*detached); ok {
		l.mu.Lock()
		l.ids = append(l.ids, strconv.Itoa(d.cmd.Process.Pid))
		l.mu.Unlock()
	}
	return inst, err
}

func (l *pidLauncher) pids() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.ids...)
}

func init() { remoteParentRole = playRemoteParent }
