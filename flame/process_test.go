//go:build unix

package flame_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/goflame/goflame/flame"
)

// Functions the tests run on runner processes. Registered at package
// level, so the parent and its runners (the same test binary) agree.

type echoIn struct {
	Name  string
	Nums  []int
	Attrs map[string]string
}

type echoOut struct {
	Greeting string
	Sum      int
	Attrs    map[string]string
	PID      int
	Runner   uint64
}

var echoFn = flame.Register("test.echo", func(ctx context.Context, in echoIn) (echoOut, error) {
	sum := 0
	for _, n := range in.Nums {
		sum += n
	}
	id, _ := flame.RunnerID(ctx)
	return echoOut{Greeting: "hello, " + in.Name, Sum: sum, Attrs: in.Attrs, PID: os.Getpid(), Runner: id}, nil
})

var failFn = flame.Register("test.fail", func(ctx context.Context, msg string) (int, error) {
	return 0, errors.New(msg)
})

var panicFn = flame.Register("test.panic", func(ctx context.Context, msg string) (int, error) {
	panic(msg)
})

var pidFn = flame.Register("test.pid", func(ctx context.Context, _ struct{}) (int, error) {
	return os.Getpid(), nil
})

// blockIn drives test.block: it writes its pid to Marker (if set), then
// waits for its ctx (or, with Ignore, sleeps For regardless).
type blockIn struct {
	Marker string
	For    time.Duration
	Ignore bool
}

type blockOut struct {
	PID         int
	HadDeadline bool
}

var blockFn = flame.Register("test.block", func(ctx context.Context, in blockIn) (blockOut, error) {
	_, hasDeadline := ctx.Deadline()
	if in.Marker != "" {
		if err := os.WriteFile(in.Marker, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			return blockOut{}, err
		}
	}
	if in.Ignore {
		time.Sleep(in.For)
		return blockOut{PID: os.Getpid()}, nil
	}
	select {
	case <-ctx.Done():
		return blockOut{}, fmt.Errorf("handler saw (deadline set: %v): %w", hasDeadline, ctx.Err())
	case <-time.After(in.For):
		return blockOut{PID: os.Getpid(), HadDeadline: hasDeadline}, nil
	}
})

var blobFn = flame.Register("test.blob", func(ctx context.Context, n int) (string, error) {
	return strings.Repeat("x", n), nil
})

var printFn = flame.Register("test.print", func(ctx context.Context, s string) (bool, error) {
	fmt.Println("out: " + s)
	fmt.Fprintln(os.Stderr, "err: "+s)
	return true, nil
})

// picky encodes to JSON that it refuses to decode.
type picky struct{}

func (picky) MarshalBinary() ([]byte, error) { return []byte("picky"), nil }
func (*picky) UnmarshalBinary([]byte) error  { return errors.New("picky refuses to decode") }
func (picky) MarshalJSON() ([]byte, error)   { return []byte(`"picky"`), nil }
func (*picky) UnmarshalJSON([]byte) error    { return errors.New("picky refuses to decode JSON") }

var (
	pickyFn     = flame.Register("test.picky", func(ctx context.Context, _ picky) (int, error) { return 1, nil })
	pickyJSONFn = flame.Register("test.picky.json", func(ctx context.Context, _ picky) (int, error) { return 1, nil }, flame.WithCodec(flame.JSON))
)

// encode is v as the default codec encodes arguments.
func encode(t *testing.T, v any) []byte {
	t.Helper()
	b, err := flame.CBOR.Marshal(v)
	require.NoError(t, err)
	return b
}

// test.ignoreterm makes its runner deaf to SIGTERM, as a wedged process
// would be.
var ignoreTermFn = flame.Register("test.ignoreterm", func(ctx context.Context, _ int) (int, error) {
	signal.Ignore(syscall.SIGTERM)
	return os.Getpid(), nil
})

func init() {
	// A runner started with GOFLAME_TEST_EXTRA registers one more function
	// than its parent: a different registry, as after a skewed deploy.
	if os.Getenv("GOFLAME_TEST_EXTRA") != "" {
		flame.Register("test.extra", func(ctx context.Context, _ int) (int, error) { return 0, nil })
	}
	// One started with GOFLAME_TEST_CODEC=json registers test.codec with
	// JSON, where its parent has CBOR: the same function, another encoding.
	var codec []flame.RegisterOption
	if os.Getenv("GOFLAME_TEST_CODEC") == "json" {
		codec = append(codec, flame.WithCodec(flame.JSON))
	}
	flame.Register("test.codec", func(ctx context.Context, n int) (int, error) { return n, nil }, codec...)
}

// capture is an slog.Handler that keeps every record, for assertions and
// for the test log on failure.
type capture struct {
	mu      sync.Mutex
	records []string
	attrs   []slog.Attr
}

func (c *capture) Enabled(context.Context, slog.Level) bool { return true }
func (c *capture) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	for _, a := range c.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	c.mu.Lock()
	c.records = append(c.records, b.String())
	c.mu.Unlock()
	return nil
}
func (c *capture) WithAttrs(as []slog.Attr) slog.Handler {
	return &captureView{c: c, attrs: as}
}
func (c *capture) WithGroup(string) slog.Handler { return c }

func (c *capture) lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.records...)
}

type captureView struct {
	c     *capture
	attrs []slog.Attr
}

func (v *captureView) Enabled(ctx context.Context, l slog.Level) bool { return true }
func (v *captureView) Handle(ctx context.Context, r slog.Record) error {
	r2 := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r2.AddAttrs(v.attrs...)
	r.Attrs(func(a slog.Attr) bool { r2.AddAttrs(a); return true })
	return v.c.Handle(ctx, r2)
}
func (v *captureView) WithAttrs(as []slog.Attr) slog.Handler {
	return &captureView{c: v.c, attrs: append(append([]slog.Attr(nil), v.attrs...), as...)}
}
func (v *captureView) WithGroup(string) slog.Handler { return v }

// procPool makes a pool of runner processes that is closed (and checked to
// leave no child process behind) when the test ends.
func procPool(t *testing.T, cfg flame.Config, be flame.ProcessBackend) (*flame.Pool, *capture) {
	t.Helper()
	logs := &capture{}
	be.Logger = slog.New(logs)
	be.Env = append(be.Env, raceQuickExit())
	cfg.Backend = be
	if cfg.Name == "" {
		cfg.Name = "proc"
	}
	if cfg.Max == 0 {
		cfg.Max = 2
	}
	if cfg.BootTimeout == 0 {
		cfg.BootTimeout = 20 * time.Second // generous: a loaded machine, -race
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = be.Logger
	}
	p, err := flame.NewPool(cfg)
	require.NoError(t, err, "NewPool")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		assert.NoError(t, p.Close(ctx), "Close")
		waitNoChildren(t, 10*time.Second)
		if t.Failed() {
			for _, l := range logs.lines() {
				t.Log(l)
			}
		}
	})
	return p, logs
}

// raceQuickExit spares runners built with -race the race detector's
// one-second sleep at exit (reports are still printed).
func raceQuickExit() string {
	return "GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")
}

// gone reports whether pid has exited (it may linger as a zombie of a
// parent that is not this process).
func gone(pid int) bool {
	st, ok := procStat(pid)
	return !ok || st.state == "Z" || st.state == "X"
}

// blockInBackground starts a call that holds its slot for a minute, and
// returns its runner's pid once the handler runs, and the call's error
// when it returns.
func blockInBackground(t *testing.T, p *flame.Pool) (int, <-chan error) {
	t.Helper()
	marker := filepath.Join(t.TempDir(), "started")
	errc := make(chan error, 1)
	go func() {
		_, err := blockFn.Call(context.Background(), p, blockIn{Marker: marker, For: time.Minute})
		errc <- err
	}()
	return waitMarker(t, marker), errc
}

func waitNoChildren(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		kids := children(os.Getpid())
		if len(kids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("child processes left behind (pid: state): %v", kids)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eventually polls cond until it holds or the time is up.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitMarker waits until a test.block handler has started and returns the
// pid it wrote.
func waitMarker(t *testing.T, path string) int {
	t.Helper()
	var pid int
	eventually(t, 20*time.Second, "the handler to start", func() bool {
		b, err := os.ReadFile(path)
		if err != nil || len(b) == 0 {
			return false
		}
		pid, err = strconv.Atoi(string(b))
		return err == nil
	})
	return pid
}

func TestProcessResultsAndErrorsCrossIntact(t *testing.T) {
	p, _ := procPool(t, flame.Config{Max: 1}, flame.ProcessBackend{})
	ctx := context.Background()

	in := echoIn{Name: "wörld ✓", Nums: []int{1, 2, 3, 4}, Attrs: map[string]string{"a": "b", "ü": "\x00"}}
	out, err := echoFn.Call(ctx, p, in)
	require.NoError(t, err, "echo")
	require.Equal(t, "hello, wörld ✓", out.Greeting, "echo result did not cross intact: %+v", out)
	require.Equal(t, 10, out.Sum, "echo result did not cross intact: %+v", out)
	require.Equal(t, "\x00", out.Attrs["ü"], "echo result did not cross intact: %+v", out)
	require.Equal(t, "b", out.Attrs["a"], "echo result did not cross intact: %+v", out)
	require.NotEqual(t, os.Getpid(), out.PID, "echo ran in pid %d; want a runner process (test pid %d)", out.PID, os.Getpid())
	require.NotZero(t, out.PID, "echo ran in pid %d; want a runner process (test pid %d)", out.PID, os.Getpid())
	require.Equal(t, uint64(1), out.Runner, "RunnerID on the runner = %d, want 1", out.Runner)

	_, err = failFn.Call(ctx, p, "disk full: /var/data")
	var fe *flame.FuncError
	require.ErrorAs(t, err, &fe, "handler error = %#v (%v), want *FuncError with the message intact", err, err)
	require.Equal(t, "disk full: /var/data", fe.Message, "handler error = %#v (%v), want *FuncError with the message intact", err, err)
	require.Equal(t, flame.ErrorCode("handler"), fe.Code, "handler error = %#v (%v), want *FuncError with the message intact", err, err)
	require.Equal(t, "test.fail", fe.Func, "handler error = %#v (%v), want *FuncError with the message intact", err, err)
	require.EqualError(t, err, "disk full: /var/data", "error message")

	_, err = panicFn.Call(ctx, p, "boom")
	var pe *flame.PanicError
	require.ErrorAs(t, err, &pe, "panic = %#v, want *PanicError with value and the runner's stack", err)
	require.Equal(t, "boom", pe.Value, "panic = %#v, want *PanicError with value and the runner's stack", err)
	require.Contains(t, string(pe.Stack), "flame_test", "panic = %#v, want *PanicError with value and the runner's stack", err)

	// The runner survived the panic and still serves, in the same process.
	out2, err := echoFn.Call(ctx, p, echoIn{Name: "again"})
	require.NoError(t, err, "after a panic: %+v; want the same runner (pid %d) serving", out2, out.PID)
	require.Equal(t, out.PID, out2.PID, "after a panic: %+v, %v; want the same runner (pid %d) serving", out2, err, out.PID)
	st := p.Stats()
	require.Equal(t, uint64(1), st.Booted, "stats %+v: want one boot, no failures", st)
	require.Zero(t, st.BootFailures, "stats %+v: want one boot, no failures", st)
}

func TestProcessCancellationReachesHandler(t *testing.T) {
	p, _ := procPool(t, flame.Config{Max: 1}, flame.ProcessBackend{})
	marker := filepath.Join(t.TempDir(), "started")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := blockFn.Call(ctx, p, blockIn{Marker: marker, For: time.Minute})
		errc <- err
	}()
	waitMarker(t, marker)
	cancel()
	err := <-errc
	require.ErrorIs(t, err, context.Canceled, "err = %v; want the handler's own report of context.Canceled", err)
	require.ErrorContains(t, err, "handler saw", "err = %v; want the handler's own report of context.Canceled", err)
	require.NotErrorIs(t, err, flame.ErrTimeout, "err = %v; a cancel is not a timeout", err)
	// The slot came back: the runner takes the next call.
	_, err = pidFn.Call(context.Background(), p, struct{}{})
	require.NoError(t, err, "call after cancel")
}

func TestProcessDeadlineReachesHandler(t *testing.T) {
	slowInShort(t)
	p, _ := procPool(t, flame.Config{Max: 1}, flame.ProcessBackend{})
	// Boot first, so the limit below is spent in the handler.
	_, err := pidFn.Call(context.Background(), p, struct{}{})
	require.NoError(t, err)
	_, err = blockFn.Call(context.Background(), p, blockIn{For: time.Minute}, flame.WithTimeout(300*time.Millisecond))
	require.ErrorIs(t, err, flame.ErrTimeout, "err = %v; want ErrTimeout and context.DeadlineExceeded", err)
	require.ErrorIs(t, err, context.DeadlineExceeded, "err = %v; want ErrTimeout and context.DeadlineExceeded", err)
	require.ErrorContains(t, err, "handler saw (deadline set: true)", "err = %v; want the handler to have seen its deadline", err)
	// A caller's deadline travels too.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = blockFn.Call(ctx, p, blockIn{For: time.Minute}, flame.WithTimeout(time.Hour))
	require.ErrorIs(t, err, context.DeadlineExceeded, "err = %v; want the handler to have seen the caller's deadline", err)
	require.ErrorContains(t, err, "handler saw (deadline set: true)", "err = %v; want the handler to have seen the caller's deadline", err)
	out, err := blockFn.Call(context.Background(), p, blockIn{For: time.Millisecond})
	require.NoError(t, err, "default Timeout: %+v; want the handler to see Config.Timeout as its deadline", out)
	require.True(t, out.HadDeadline, "default Timeout: %+v, %v; want the handler to see Config.Timeout as its deadline", out, err)
}

// A runner told to stop by its platform (SIGTERM: a pod deleted, a node
// drained) mid-call fails the call with ErrRunnerDown, not with a
// cancellation its caller never asked for.
func TestProcessSIGTERMMidCallGivesRunnerDown(t *testing.T) {
	p, _ := procPool(t, flame.Config{Max: 1}, flame.ProcessBackend{})
	pid, errc := blockInBackground(t, p)
	require.NoError(t, syscall.Kill(pid, syscall.SIGTERM))
	err := <-errc
	require.ErrorIs(t, err, flame.ErrRunnerDown)
	assert.NotErrorIs(t, err, context.Canceled)
}

func TestProcessKillMidCallGivesRunnerDownAndPoolRecovers(t *testing.T) {
	shrunk := make(chan flame.ShrinkEvent, 4)
	p, _ := procPool(t, flame.Config{Min: 1, Max: 1, OnShrink: func(ev flame.ShrinkEvent) { shrunk <- ev }},
		flame.ProcessBackend{})
	pid, errc := blockInBackground(t, p)
	killed := time.Now()
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	var err error
	select {
	case err = <-errc:
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the call did not return after its runner was killed")
	}
	took := time.Since(killed)
	assert.LessOrEqual(t, took, time.Second, "ErrRunnerDown took %v after SIGKILL; want under a second", took)
	require.ErrorIs(t, err, flame.ErrRunnerDown, "err = %v; want ErrRunnerDown naming the signal", err)
	require.ErrorContains(t, err, "killed", "err = %v; want ErrRunnerDown naming the signal", err)
	ps, inProc := procStat(pid)
	require.False(t, inProc, "killed runner %d still in /proc (state %s): not reaped", pid, ps.state)
	select {
	case ev := <-shrunk:
		require.ErrorIs(t, ev.Reason, flame.ErrRunnerDown, "shrink event %+v; want runner 1 down with ErrRunnerDown", ev)
		require.Equal(t, uint64(1), ev.RunnerID, "shrink event %+v; want runner 1 down with ErrRunnerDown", ev)
	case <-time.After(10 * time.Second):
		require.FailNow(t, "no shrink event for the killed runner")
	}
	// The pool replaces its Min runner and serves again.
	newPID, err := pidFn.Call(context.Background(), p, struct{}{})
	require.NoError(t, err, "after the crash: pid %d; want a new runner", newPID)
	require.NotEqual(t, pid, newPID, "after the crash: pid %d, %v; want a new runner", newPID, err)
	st := p.Stats()
	require.Equal(t, 1, st.Runners, "stats %+v; want the replacement runner up", st)
	require.Equal(t, uint64(2), st.Booted, "stats %+v; want the replacement runner up", st)
	require.Equal(t, uint64(1), st.Shrunk, "stats %+v; want the replacement runner up", st)
}

// A caller that retries on ErrRunnerDown never reaches the runner that
// died: the calls started right after the failed one all go to a
// replacement, round after round.
func TestProcessRetryAfterRunnerDownNeverReachesTheDeadRunner(t *testing.T) {
	p, _ := procPool(t, flame.Config{Min: 1, Max: 2, MaxConcurrency: 8}, flame.ProcessBackend{})
	for round := range 3 {
		pid, errc := blockInBackground(t, p)
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
		err := <-errc
		require.ErrorIs(t, err, flame.ErrRunnerDown, "round %d: err = %v; want ErrRunnerDown", round, err)
		dead := uint64(round + 1)
		for _, rl := range p.Stats().RunnerLoads {
			assert.NotEqual(t, dead, rl.ID, "round %d: runner %d still takes checkouts after its caller got ErrRunnerDown", round, dead)
		}
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Go(func() {
				got, err := pidFn.Call(context.Background(), p, struct{}{})
				if assert.NoError(t, err, "round %d, retry %d", round, i) {
					assert.NotEqual(t, pid, got, "round %d, retry %d: served by the dead runner %d", round, i, pid)
				}
			})
		}
		wg.Wait()
	}
}

func TestProcessIdleRunnersExitAndAreReaped(t *testing.T) {
	slowInShort(t)
	shrunk := make(chan flame.ShrinkEvent, 4)
	p, _ := procPool(t, flame.Config{Max: 2, MaxConcurrency: 1, IdleShutdownAfter: 150 * time.Millisecond,
		OnShrink: func(ev flame.ShrinkEvent) { shrunk <- ev }}, flame.ProcessBackend{})
	// Two children hold a slot each: two runners.
	dir := t.TempDir()
	pids := make([]int, 2)
	var kids []*flame.Child
	for i := range pids {
		marker := filepath.Join(dir, strconv.Itoa(i))
		child, err := blockFn.Place(context.Background(), p, blockIn{Marker: marker, For: time.Hour})
		require.NoError(t, err)
		kids = append(kids, child)
		pids[i] = waitMarker(t, marker)
	}
	require.NotEqual(t, pids[0], pids[1], "both children ran in pid %d; want two runners", pids[0])
	select {
	case ev := <-shrunk:
		require.FailNow(t, "a busy runner idled down", "%+v", ev)
	case <-time.After(400 * time.Millisecond):
	}
	for _, c := range kids {
		c.Stop()
	}
	for range 2 {
		select {
		case ev := <-shrunk:
			require.ErrorIs(t, ev.Reason, flame.ErrIdleShutdown, "shrink %+v; want ErrIdleShutdown", ev)
		case <-time.After(20 * time.Second):
			require.FailNow(t, "runners did not idle down")
		}
	}
	for _, pid := range pids {
		eventually(t, 10*time.Second, fmt.Sprintf("runner %d to exit and be reaped", pid), func() bool {
			_, exists := procStat(pid)
			return !exists
		})
	}
	assert.Empty(t, children(os.Getpid()), "children left (pid: state)")
	st := p.Stats()
	require.Zero(t, st.Runners, "stats %+v; want no runners, 2 shrunk", st)
	require.Equal(t, uint64(2), st.Shrunk, "stats %+v; want no runners, 2 shrunk", st)
}

func TestProcessCloseLeavesNoChildBehind(t *testing.T) {
	logs := &capture{}
	p, err := flame.NewPool(flame.Config{Name: "close", Min: 1, Max: 3, MaxConcurrency: 1, BootTimeout: 20 * time.Second,
		Backend: flame.ProcessBackend{Logger: slog.New(logs), Env: []string{raceQuickExit()}}})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			_, err := blockFn.Call(context.Background(), p, blockIn{For: 300 * time.Millisecond})
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	require.Len(t, children(os.Getpid()), 3, "child processes before Close; want 3")
	require.NoError(t, p.Close(context.Background()), "Close")
	// Close returns once every runner has been shut down and reaped.
	require.Empty(t, children(os.Getpid()), "children after Close")
}

func TestProcessCloseTerminatesRunnerThatIgnoresCancel(t *testing.T) {
	slowInShort(t)
	logs := &capture{}
	p, err := flame.NewPool(flame.Config{Name: "stuck", Max: 1, BootTimeout: 20 * time.Second,
		ShutdownTimeout: 200 * time.Millisecond, Backend: flame.ProcessBackend{Logger: slog.New(logs), Env: []string{raceQuickExit()}}})
	require.NoError(t, err)
	marker := filepath.Join(t.TempDir(), "started")
	require.NoError(t, blockFn.Cast(context.Background(), p, blockIn{Marker: marker, For: time.Hour, Ignore: true}))
	pid := waitMarker(t, marker)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_ = p.Close(ctx) // ctx ends first: the runner is terminated
	eventually(t, 10*time.Second, "the stuck runner to be terminated and reaped", func() bool {
		_, exists := procStat(pid)
		return !exists
	})
	waitNoChildren(t, 5*time.Second)
}

func TestProcessUnknownFuncAndUndecodableArgs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	node, err := flame.ProcessBackend{Logger: slog.New(&capture{}), Env: []string{raceQuickExit()}}.Boot(ctx, flame.RunnerSpec{Pool: "direct", ID: 7})
	require.NoError(t, err)
	defer func() {
		assert.NoError(t, node.Shutdown(ctx))
		<-node.Done()
		waitNoChildren(t, 5*time.Second)
	}()
	inv := node.(flame.Invoker)

	_, err = inv.Invoke(ctx, flame.Invocation{Func: "no.such.func", Args: []byte(`{}`)})
	require.ErrorIs(t, err, flame.ErrUnknownFunc, "unknown id: %v; want ErrUnknownFunc naming the id and runner", err)
	require.ErrorContains(t, err, `"no.such.func" is not registered on runner 7`, "unknown id: %v; want ErrUnknownFunc naming the id and runner", err)
	_, err = inv.Invoke(ctx, flame.Invocation{Func: "test.echo", Args: []byte{0xa1, 0x64, 'N'}}) // a map cut short
	require.ErrorIs(t, err, flame.ErrBadPayload, "undecodable args: %v; want ErrBadPayload", err)
	require.ErrorContains(t, err, "test.echo: decoding the arguments", "undecodable args: %v; want ErrBadPayload", err)
	res, err := inv.Invoke(ctx, flame.Invocation{Func: "test.echo", Args: encode(t, map[string]string{"Name": "raw"})})
	require.NoError(t, err, "raw invoke: %x", res)
	var out echoOut
	require.NoError(t, flame.CBOR.Unmarshal(res, &out))
	require.Equal(t, "hello, raw", out.Greeting)
	// A plain closure cannot cross.
	err = node.Exec(ctx, func(context.Context) error { return nil })
	require.ErrorIs(t, err, flame.ErrNotPortable, "closure: %v; want ErrNotPortable", err)
}

func TestProcessUndecodableArgsThroughFunc(t *testing.T) {
	p, _ := procPool(t, flame.Config{Max: 1}, flame.ProcessBackend{})
	_, err := pickyFn.Call(context.Background(), p, picky{})
	require.ErrorIs(t, err, flame.ErrBadPayload, "err = %v; want ErrBadPayload from the runner", err)
	require.ErrorContains(t, err, "picky refuses", "err = %v; want ErrBadPayload from the runner", err)
	// With JSON as its codec, a function's types decode with their JSON methods.
	_, err = pickyJSONFn.Call(context.Background(), p, picky{})
	require.ErrorIs(t, err, flame.ErrBadPayload)
	require.ErrorContains(t, err, "picky refuses to decode JSON")
}

func TestProcessOversizedPayloads(t *testing.T) {
	p, _ := procPool(t, flame.Config{Max: 1}, flame.ProcessBackend{MaxMessageSize: 4096})
	ctx := context.Background()
	_, err := echoFn.Call(ctx, p, echoIn{Name: strings.Repeat("a", 10_000)})
	require.ErrorIs(t, err, flame.ErrTooLarge, "big arguments: %v; want ErrTooLarge", err)
	require.ErrorContains(t, err, "arguments of", "big arguments: %v; want ErrTooLarge", err)
	_, err = blobFn.Call(ctx, p, 10_000)
	require.ErrorIs(t, err, flame.ErrTooLarge, "big result: %v; want ErrTooLarge", err)
	require.ErrorContains(t, err, "result of", "big result: %v; want ErrTooLarge", err)
	// Just under the limit works, and the runner is still healthy.
	s, err := blobFn.Call(ctx, p, 4000)
	require.NoError(t, err, "result under the limit: %d bytes", len(s))
	require.Len(t, s, 4000, "result under the limit: %d bytes, %v", len(s), err)
	st := p.Stats()
	require.Equal(t, uint64(1), st.Booted, "stats %+v; want the one runner to have served all calls", st)
}

func TestProcessVersionSkewFailsBoot(t *testing.T) {
	_, err := flame.NewPool(flame.Config{Min: 1, Max: 1, BootTimeout: 20 * time.Second,
		Backend: flame.ProcessBackend{Env: []string{"GOFLAME_TEST_EXTRA=1", raceQuickExit()}, Logger: slog.New(&capture{})}})
	require.ErrorIs(t, err, flame.ErrVersionSkew, "err = %v; want ErrVersionSkew about the registry", err)
	require.ErrorContains(t, err, "must register the same functions", "err = %v; want ErrVersionSkew about the registry", err)
	waitNoChildren(t, 5*time.Second)
}

// A runner whose function has another codec than the parent's is version
// skew, refused at the handshake: the two would not read each other.
func TestProcessCodecMismatchIsVersionSkew(t *testing.T) {
	_, err := flame.NewPool(flame.Config{Min: 1, Max: 1, BootTimeout: 20 * time.Second,
		Backend: flame.ProcessBackend{Env: []string{"GOFLAME_TEST_CODEC=json", raceQuickExit()}, Logger: slog.New(&capture{})}})
	require.ErrorIs(t, err, flame.ErrVersionSkew)
	waitNoChildren(t, 5*time.Second)
}

func TestProcessBootTimeoutKillsChild(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	start := time.Now()
	_, err = flame.NewPool(flame.Config{Min: 1, Max: 1, BootTimeout: 300 * time.Millisecond,
		Backend: flame.ProcessBackend{Path: sleep, Args: []string{"60"}, Logger: slog.New(&capture{})}})
	// The pool's timer and the backend's race to report it; either is fine.
	require.ErrorIs(t, err, context.DeadlineExceeded, "err = %v; want a boot timeout", err)
	require.True(t, strings.Contains(strings.ToLower(err.Error()), "boottimeout") || strings.Contains(err.Error(), "boot timeout"),
		"err = %v; want a boot timeout", err)
	took := time.Since(start)
	require.LessOrEqual(t, took, 10*time.Second, "NewPool took %v", took)
	waitNoChildren(t, 5*time.Second)

	// A program that exits at once (not a goflame runner) fails the boot
	// with its status and output.
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh binary")
	}
	_, err = flame.NewPool(flame.Config{Min: 1, Max: 1, BootTimeout: 20 * time.Second,
		Backend: flame.ProcessBackend{Path: sh, Args: []string{"-c", "echo not a runner >&2; exit 7"}, Logger: slog.New(&capture{})}})
	require.ErrorContains(t, err, "exit status 7", "err = %v; want the exit status and last output", err)
	require.ErrorContains(t, err, "not a runner", "err = %v; want the exit status and last output", err)
	waitNoChildren(t, 5*time.Second)
}

func TestProcessClosureIsNotPortable(t *testing.T) {
	p, logs := procPool(t, flame.Config{Max: 1}, flame.ProcessBackend{})
	ctx := context.Background()
	ran := false
	err := p.Call(ctx, func(context.Context) error { ran = true; return nil })
	require.ErrorIs(t, err, flame.ErrNotPortable, "Call(closure) = %v (ran %v); want ErrNotPortable", err, ran)
	require.False(t, ran, "Call(closure) = %v (ran %v); want ErrNotPortable", err, ran)
	_, err = p.PlaceChild(ctx, func(context.Context) error { ran = true; return nil })
	require.ErrorIs(t, err, flame.ErrNotPortable, "PlaceChild(closure) = %v; want ErrNotPortable", err)
	require.False(t, ran, "PlaceChild(closure) = %v; want ErrNotPortable", err)
	require.NoError(t, p.Cast(ctx, func(context.Context) error { ran = true; return nil }))
	eventually(t, 10*time.Second, "the cast's error to be logged", func() bool {
		for _, l := range logs.lines() {
			if strings.Contains(l, "cast failed") && strings.Contains(l, "cannot run a closure") {
				return true
			}
		}
		return false
	})
	require.False(t, ran, "a closure ran")
}

func TestProcessCastAndPlace(t *testing.T) {
	p, _ := procPool(t, flame.Config{Max: 1}, flame.ProcessBackend{})
	dir := t.TempDir()
	ctx := context.Background()

	castMarker := filepath.Join(dir, "cast")
	require.NoError(t, blockFn.Cast(ctx, p, blockIn{Marker: castMarker, For: time.Millisecond}))
	castPID := waitMarker(t, castMarker)

	placeMarker := filepath.Join(dir, "place")
	child, err := blockFn.Place(ctx, p, blockIn{Marker: placeMarker, For: time.Hour})
	require.NoError(t, err)
	defer child.Stop()
	pid := waitMarker(t, placeMarker)
	require.Equal(t, castPID, pid, "place ran in pid %d, cast in %d; want the one runner", pid, castPID)
	select {
	case <-child.Done():
		require.FailNow(t, "child ended early", "%v", child.Err())
	default:
	}
	// The cast's slot comes back; the child keeps its own.
	eventually(t, 10*time.Second, "one slot in use while the child runs", func() bool { return p.Stats().InUse == 1 })
	child.Stop()
	err = child.Err()
	require.ErrorIs(t, err, context.Canceled, "child.Err() = %v; want the handler's report of its cancellation", err)
	require.ErrorContains(t, err, "handler saw", "child.Err() = %v; want the handler's report of its cancellation", err)
}

func TestProcessOutputGoesToLogger(t *testing.T) {
	p, logs := procPool(t, flame.Config{Name: "printer", Max: 1}, flame.ProcessBackend{})
	_, err := printFn.Call(context.Background(), p, "line one")
	require.NoError(t, err)
	want := []string{
		"runner output pool=printer runner=1 pid=", "stream=stdout line=out: line one",
		"stream=stderr line=err: line one",
	}
	eventually(t, 10*time.Second, "the runner's output in the log", func() bool {
		found := 0
		for _, l := range logs.lines() {
			if strings.Contains(l, want[0]) && (strings.Contains(l, want[1]) || strings.Contains(l, want[2])) {
				found++
			}
		}
		return found == 2
	})
}

func TestProcessRunnersDieWithParent(t *testing.T) {
	slowInShort(t)
	for _, how := range []string{"killed", "stopped"} {
		t.Run(how, func(t *testing.T) {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "GOFLAME_TEST_ROLE=parent")
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			require.NoError(t, err)
			require.NoError(t, cmd.Start())
			defer func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}()
			line, err := bufio.NewReader(out).ReadString('\n')
			require.NoError(t, err, "helper parent")
			var pids []int
			for _, f := range strings.Fields(strings.TrimPrefix(line, "runners")) {
				pid, _ := strconv.Atoi(f)
				pids = append(pids, pid)
			}
			require.Len(t, pids, 2, "helper said %q; want two runner pids", line)
			for _, pid := range pids {
				require.False(t, gone(pid), "runner %d not running before the parent went away", pid)
			}
			sig := syscall.SIGKILL
			if how == "stopped" {
				sig = syscall.SIGSTOP // alive but silent: keepalives go unanswered
			}
			require.NoError(t, cmd.Process.Signal(sig))
			for _, pid := range pids {
				eventually(t, 5*time.Second, fmt.Sprintf("runner %d to exit after its parent was %s", pid, how), func() bool {
					return gone(pid)
				})
			}
		})
	}
}

func init() { helperMain = playRole }

// playRole is the test binary playing a role in another process.
func playRole(role string) int {
	switch role {
	case "parent":
		// A parent with two runners that pings fast, so that a stopped
		// parent is noticed quickly. It waits to be killed.
		p, err := flame.NewPool(flame.Config{Name: "helper", Min: 2, Max: 2, BootTimeout: 20 * time.Second,
			Backend: flame.ProcessBackend{KeepAlive: 200 * time.Millisecond, Env: []string{raceQuickExit()}}})
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 1
		}
		defer p.Close(context.Background())
		var pids []string
		for pid := range children(os.Getpid()) {
			pids = append(pids, strconv.Itoa(pid))
		}
		fmt.Println("runners " + strings.Join(pids, " "))
		time.Sleep(time.Minute)
		return 0
	}
	if role == "remoteparent" && remoteParentRole != nil {
		return remoteParentRole()
	}
	fmt.Fprintln(os.Stderr, "unknown role", role)
	return 2
}

// remoteParentRole plays "remoteparent", where the platform has network
// namespaces (remote_netns_test.go).
var remoteParentRole func() int

func TestFuncOnLocalBackendRoundTripsThroughCodec(t *testing.T) {
	p, err := flame.NewPool(flame.Config{Max: 1})
	require.NoError(t, err)
	defer p.Close(context.Background())
	ctx := context.Background()
	out, err := echoFn.Call(ctx, p, echoIn{Name: "local", Nums: []int{2, 3}})
	require.NoError(t, err, "local echo: %+v", out)
	require.Equal(t, "hello, local", out.Greeting, "local echo: %+v, %v", out, err)
	require.Equal(t, 5, out.Sum, "local echo: %+v, %v", out, err)
	require.Equal(t, os.Getpid(), out.PID, "local echo: %+v, %v", out, err)
	require.Equal(t, uint64(1), out.Runner, "local echo: %+v, %v", out, err)
	// Errors come back in the same form as from a process.
	_, err = failFn.Call(ctx, p, "nope")
	var fe *flame.FuncError
	require.ErrorAs(t, err, &fe, "local error: %#v", err)
	require.Equal(t, "nope", fe.Message, "local error: %#v", err)
	require.Equal(t, flame.ErrorCode("handler"), fe.Code, "local error: %#v", err)
	// A value that cannot be decoded fails here as it would on a process.
	_, err = pickyFn.Call(ctx, p, picky{})
	require.ErrorIs(t, err, flame.ErrBadPayload, "picky: %v; want ErrBadPayload", err)
	// A value that cannot be encoded fails before any runner is involved.
	_, err = chanFn.Call(ctx, p, make(chan int))
	require.ErrorIs(t, err, flame.ErrBadPayload, "chan argument: %v; want ErrBadPayload", err)
	var pe *flame.PanicError
	_, err = panicFn.Call(ctx, p, "local boom")
	require.ErrorAs(t, err, &pe, "local panic: %v", err)
	require.Equal(t, "local boom", pe.Value, "local panic: %v", err)
	// Cast and Place run too.
	child, err := blockFn.Place(ctx, p, blockIn{For: time.Hour})
	require.NoError(t, err)
	child.Stop()
	require.ErrorIs(t, child.Err(), context.Canceled, "local child: %v", child.Err())
}

var chanFn = flame.Register("test.chan", func(ctx context.Context, c chan int) (int, error) { return 0, nil })

// nestedRemote is the process pool that test.nested calls into.
var nestedRemote *flame.Pool

// test.nested, run on a local runner, sends a plain closure to a process
// pool: the closure must not ride on its parent's invocation. A nested
// registered call works.
var nested = flame.Register("test.nested", func(ctx context.Context, _ int) (string, error) {
	err := nestedRemote.Call(ctx, func(context.Context) error { return nil })
	if !errors.Is(err, flame.ErrNotPortable) {
		return "", fmt.Errorf("nested closure: %v", err)
	}
	pid, err := pidFn.Call(ctx, nestedRemote, struct{}{})
	if err != nil || pid == os.Getpid() {
		return "", fmt.Errorf("nested Func: %d, %v", pid, err)
	}
	return "ok", nil
})

func TestNestedClosureFromLocalHandlerIsNotPortable(t *testing.T) {
	remote, _ := procPool(t, flame.Config{Name: "remote", Max: 1}, flame.ProcessBackend{})
	local, err := flame.NewPool(flame.Config{Name: "local", Max: 1})
	require.NoError(t, err)
	defer local.Close(context.Background())

	nestedRemote = remote
	defer func() { nestedRemote = nil }()
	got, err := nested.Call(context.Background(), local, 0)
	require.NoError(t, err, "nested: %q", got)
	require.Equal(t, "ok", got, "nested: %q, %v", got, err)
}

func TestRegisterRejectsBadIDs(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		assert.Panics(t, f, "%s: no panic", name)
	}
	noop := func(context.Context, int) (int, error) { return 0, nil }
	mustPanic("empty id", func() { flame.Register("", noop) })
	mustPanic("duplicate id", func() { flame.Register("test.echo", noop) })
	mustPanic("nil fn", func() { flame.Register[int, int]("test.nil", nil) })
	require.Equal(t, "test.echo", echoFn.ID(), "ID() = %q", echoFn.ID())
}

func TestProcessPoolLeavesNoGoroutineAfterClose(t *testing.T) {
	before := goleak.IgnoreCurrent()
	logs := &capture{}
	p, err := flame.NewPool(flame.Config{Name: "leak", Min: 1, Max: 2, MaxConcurrency: 1, BootTimeout: 20 * time.Second,
		Backend: flame.ProcessBackend{Logger: slog.New(logs), Env: []string{raceQuickExit()}}})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			_, err := echoFn.Call(context.Background(), p, echoIn{Name: strconv.Itoa(i)})
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = blockFn.Call(ctx, p, blockIn{})
	require.ErrorIs(t, err, context.Canceled, "call with a done ctx: %v", err)
	require.NoError(t, p.Close(context.Background()))
	goleak.VerifyNone(t, before)
	require.Empty(t, children(os.Getpid()), "children after Close")
}

func TestProcessShutdownEscalatesToSIGKILL(t *testing.T) {
	slowInShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node, err := flame.ProcessBackend{Logger: slog.New(&capture{}), Env: []string{raceQuickExit()}}.Boot(ctx, flame.RunnerSpec{Pool: "wedged", ID: 1})
	require.NoError(t, err)
	inv := node.(flame.Invoker)
	res, err := inv.Invoke(ctx, flame.Invocation{Func: ignoreTermFn.ID(), Args: encode(t, 0)})
	require.NoError(t, err)
	var pid int
	require.NoError(t, flame.CBOR.Unmarshal(res, &pid))
	// A call that ignores its ctx keeps the runner from draining.
	marker := filepath.Join(t.TempDir(), "started")
	callErr := make(chan error, 1)
	go func() {
		_, err := inv.Invoke(ctx, flame.Invocation{Func: "test.block", Args: encode(t, blockIn{Marker: marker, For: time.Hour, Ignore: true})})
		callErr <- err
	}()
	waitMarker(t, marker)

	sctx, scancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer scancel()
	err = node.Shutdown(sctx)
	require.ErrorContains(t, err, "signal: killed", "Shutdown = %v; want the runner killed after ignoring SIGTERM", err)
	_, exists := procStat(pid)
	require.False(t, exists, "runner %d not reaped after Shutdown returned", pid)
	select {
	case <-node.Done():
	default:
		require.FailNow(t, "Done not closed after Shutdown returned")
	}
	err = <-callErr
	require.ErrorIs(t, err, flame.ErrRunnerDown, "in-flight call: %v; want ErrRunnerDown", err)
}

// Many concurrent calls on one runner, more than the lanes a node keeps
// idle, with cancellations racing their CALLs (so CANCELs come early,
// on time and late): every call gets its own answer or its own
// cancellation, the lanes stay in step for later calls, and Close leaves
// no descriptor open.
func TestProcessManyConcurrentCallsWithCancels(t *testing.T) {
	fds0 := openFDs(t)
	p, _ := procPool(t, flame.Config{Max: 1, MaxConcurrency: 400}, flame.ProcessBackend{})
	const callers, rounds = 400, 4
	var wg sync.WaitGroup
	errs := make(chan error, callers*rounds)
	for c := range callers {
		wg.Go(func() {
			for r := range rounds {
				if (c+r)%3 == 0 {
					ctx, cancel := context.WithCancel(context.Background())
					time.AfterFunc(time.Duration(c%7)*time.Millisecond, cancel)
					_, err := blockFn.Call(ctx, p, blockIn{For: time.Minute})
					cancel()
					if !errors.Is(err, context.Canceled) {
						errs <- fmt.Errorf("caller %d round %d: cancelled call returned %v", c, r, err)
					}
					continue
				}
				out, err := echoFn.Call(context.Background(), p, echoIn{Name: strconv.Itoa(c), Nums: []int{c, r}})
				if err != nil || out.Greeting != "hello, "+strconv.Itoa(c) || out.Sum != c+r {
					errs <- fmt.Errorf("caller %d round %d: %+v, %v", c, r, out, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	for i := range 50 { // the lanes are still in step
		out, err := echoFn.Call(context.Background(), p, echoIn{Nums: []int{i}})
		require.NoError(t, err, "call %d after the storm: %+v", i, out)
		require.Equal(t, i, out.Sum, "call %d after the storm: %+v, %v", i, out, err)
	}
	require.NoError(t, p.Close(context.Background()))
	// A little slack: the runtime may open its own poller descriptors on
	// first use. A leaked lane would be hundreds.
	fds := openFDs(t)
	require.LessOrEqual(t, fds, fds0+4, "%d descriptors open after Close, %d before the pool", fds, fds0)
}

// slowInShort skips a test that waits seconds on real processes, sockets
// and timeouts when -short asks for a quick run; CI runs the full suite.
func slowInShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("waits on real processes and timeouts: run without -short")
	}
}
