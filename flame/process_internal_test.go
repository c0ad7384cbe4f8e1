//go:build unix

package flame

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/flame/internal/session"
	"github.com/goflame/goflame/flame/internal/wire"
)

func TestBuildIDIsTheRunningExecutablesGoBuildID(t *testing.T) {
	id := buildID()
	require.True(t, strings.HasPrefix(id, "go:"), "buildID() = %q; want the Go build ID of the test binary", id)
	require.GreaterOrEqual(t, len(id), 20, "buildID() = %q; want the Go build ID of the test binary", id)
	require.Equal(t, id, buildID(), "buildID is not stable")
	require.Empty(t, goBuildID("/nonexistent"), "goBuildID of a non-ELF file must be empty")
	require.Empty(t, goBuildID("/proc/self/status"), "goBuildID of a non-ELF file must be empty")
}

// Where no executable has a Go build ID (a platform without ELF), the
// build is named by a hash of its embedded build info: stable, and the
// same in parent and runner.
func TestBuildIDFallsBackToTheBuildInfo(t *testing.T) {
	id := findBuildID("/nonexistent", "/proc/self/status")
	assert.Regexp(t, "^info:[0-9a-f]{24}$", id)
	assert.Equal(t, id, findBuildID())
	assert.Equal(t, buildID(), findBuildID("/proc/self/exe"))
}

func TestCheckHelloNamesEveryKindOfSkew(t *testing.T) {
	info := parentInfo{Build: "go:A", Registry: "3:aa"}
	ok := wire.HelloMsg{Proto: wire.ProtocolVersion, Build: "go:A", Registry: "3:aa"}
	require.NoError(t, checkHello(ok, info))
	for want, h := range map[string]wire.HelloMsg{
		"protocol 99":                     {Proto: 99, Build: "go:A", Registry: "3:aa"},
		`runner build "go:B"`:             {Proto: wire.ProtocolVersion, Build: "go:B", Registry: "3:aa"},
		"must be the same binary":         {Proto: wire.ProtocolVersion, Build: "go:B", Registry: "3:aa"},
		"runner registry 4:bb":            {Proto: wire.ProtocolVersion, Build: "go:A", Registry: "4:bb"},
		"must register the same function": {Proto: wire.ProtocolVersion, Build: "go:A", Registry: "4:bb"},
	} {
		err := checkHello(h, info)
		assert.ErrorIs(t, err, ErrVersionSkew, "checkHello(%+v) = %v; want ErrVersionSkew mentioning %q", h, err, want)
		assert.ErrorContains(t, err, want, "checkHello(%+v) = %v; want ErrVersionSkew mentioning %q", h, err, want)
	}
}

func TestParentInfoRoundTripAndRejects(t *testing.T) {
	pi := parentInfo{V: parentInfoVersion, Pool: "p", Runner: 3, Conn: "fd:3", Build: "go:x", Registry: "1:y", MaxMsg: 10, KeepAliveMS: 5, ParentPID: 9}
	got, err := decodeParentInfo(pi.encode())
	require.NoError(t, err, "round trip: %+v, %v", got, err)
	require.Equal(t, pi, got, "round trip: %+v, %v", got, err)
	bad := pi
	bad.V = 2
	_, err = decodeParentInfo(bad.encode())
	require.ErrorIs(t, err, ErrVersionSkew, "future format: %v; want ErrVersionSkew", err)
	bad = pi
	bad.MaxMsg = 0
	_, err = decodeParentInfo(bad.encode())
	require.Error(t, err, "zero MaxMsg accepted")
	_, err = decodeParentInfo("%%%")
	require.Error(t, err, "garbage accepted")
}

// A runner checks every field of a FLAME_PARENT it is to dial before it
// dials: a bad one fails at once, saying which.
func TestParentInfoForADialBackIsCheckedWhole(t *testing.T) {
	good := parentInfo{V: parentInfoVersion, Runner: 3, Conn: "tls:10.0.0.1:7000", Build: "go:x", Registry: "1:y",
		MaxMsg: 1, KeepAliveMS: 1, DialMS: 1,
		Fingerprint: strings.Repeat("ab", 32), Token: base64.RawURLEncoding.EncodeToString(make([]byte, wire.SecretLen))}
	got, err := decodeParentInfo(good.encode())
	require.NoError(t, err)
	assert.Equal(t, good, got)
	for _, c := range []struct {
		want string
		bad  func(*parentInfo)
	}{
		{"bad limits", func(pi *parentInfo) { pi.KeepAliveMS = 0 }},
		{"unsupported connection", func(pi *parentInfo) { pi.Conn = "unix:/tmp/p" }},
		{"parent address", func(pi *parentInfo) { pi.Conn = "tls:10.0.0.1" }},
		{"bad certificate fingerprint", func(pi *parentInfo) { pi.Fingerprint = "ab" }},
		{"bad certificate fingerprint", func(pi *parentInfo) { pi.Fingerprint = strings.Repeat("zz", 32) }},
		{"bad token", func(pi *parentInfo) { pi.Token = "c2hvcnQ" }},
		{"bad dial window", func(pi *parentInfo) { pi.DialMS = 0 }},
	} {
		pi := good
		c.bad(&pi)
		_, err := decodeParentInfo(pi.encode())
		assert.ErrorContains(t, err, c.want)
	}
}

func TestRegistryHashCoversIDsAndTypes(t *testing.T) {
	h := registryHash()
	require.Contains(t, h, ":", "registryHash() = %q", h)
	require.Equal(t, h, registryHash(), "registryHash() = %q", h)
	for _, r := range registry.funcs {
		require.NotEmpty(t, r.sig, "%s has no signature", r.id)
	}
	require.Equal(t, "flame_test.echoIn -> flame_test.echoOut (cbor)", registry.funcs["test.echo"].sig, "signature of test.echo")
	require.Equal(t, "flame_test.picky -> int (json)", registry.funcs["test.picky.json"].sig, "the codec is part of the signature")
}

func TestFuncErrorCodesMatchSentinels(t *testing.T) {
	for code, target := range map[ErrorCode]error{
		CodeCanceled:      context.Canceled,
		CodeDeadline:      context.DeadlineExceeded,
		CodeNotRegistered: ErrUnknownFunc,
		CodeTooLarge:      ErrTooLarge,
		CodeDecode:        ErrBadPayload,
		CodeVersionSkew:   ErrVersionSkew,
	} {
		e := &FuncError{Func: "f", Code: code, Message: "m"}
		assert.ErrorIs(t, e, target, "code %s does not match %v", code, target)
		back := funcErrorOf("f", e.toWire())
		assert.Equal(t, code, back.Code, "code %s crosses the wire as %s", code, back.Code)
		assert.NotErrorIs(t, &FuncError{Code: CodeHandler}, target, "a handler error matches %v", target)
	}
	// A handler's context errors keep their meaning; a FuncError from a
	// nested call keeps its code.
	fe := asFuncError("f", context.DeadlineExceeded)
	require.Equal(t, ErrorCode("deadline"), fe.Code, "deadline: %+v", fe)
	nested := &FuncError{Func: "g", Code: "not_registered", Message: "no g"}
	fe = asFuncError("f", nested)
	require.Equal(t, ErrorCode("not_registered"), fe.Code, "nested: %+v", fe)
	require.Equal(t, "f", fe.Func, "nested: %+v", fe)
}

func TestRunnerLostErrorMatchesErrRunnerDown(t *testing.T) {
	err := error(&runnerLostError{id: 2, pid: 99, state: "signal: killed"})
	require.ErrorIs(t, err, ErrRunnerDown)
	require.ErrorContains(t, err, "runner 2 (pid 99) went down: signal: killed")
}

// A call that fails because the connection is gone is ErrRunnerDown; once
// the node is down, the error says why.
func TestLostCallIsRunnerDownSayingWhy(t *testing.T) {
	n := &processNode{id: 4, child: &childProc{pid: 99}, done: make(chan struct{})}
	n.reason = &runnerLostError{id: 4, pid: 99, state: "signal: killed"}
	close(n.done)
	got := n.lost(fmt.Errorf("%w: reading the reply: %w", session.ErrLost, io.EOF))
	assert.ErrorIs(t, got, ErrRunnerDown, "lost call -> %v; want ErrRunnerDown saying why", got)
	assert.ErrorContains(t, got, "signal: killed", "lost call -> %v; want ErrRunnerDown saying why", got)
}

// A process started as a runner whose main forgot flame.Main would, left
// alone, boot runners of its own, each of which would do the same: both
// backends refuse to boot there, with an error that says what to fix and
// that retrying cannot help.
func TestARunnerWhoseMainSkippedFlameMainBootsNoRunners(t *testing.T) {
	was := isRunner
	isRunner = true
	t.Cleanup(func() { isRunner = was })
	t.Setenv(envParent, "x")
	for name, b := range map[string]Backend{
		"process": ProcessBackend{},
		"remote":  &RemoteBackend{Launcher: CommandLauncher{Path: "/bin/false"}},
	} {
		node, err := b.Boot(context.Background(), RunnerSpec{ID: 1})
		assert.Nil(t, node, name)
		assert.ErrorIs(t, err, ErrBootFailed, name)
		assert.ErrorContains(t, err, "did not call flame.Main() first", name)
	}
	// Either alone is no sign of that: a runner that called Main has
	// removed FLAME_PARENT (Main never returns there), and a variable set
	// later is not how this process was started. The boot goes on (to
	// find its ctx canceled).
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, c := range []struct {
		runner bool
		env    bool
	}{{true, false}, {false, true}} {
		isRunner = c.runner
		if c.env {
			t.Setenv(envParent, "x")
		} else {
			os.Unsetenv(envParent)
		}
		for name, b := range map[string]Backend{
			"process": ProcessBackend{},
			"remote":  &RemoteBackend{Launcher: CommandLauncher{Path: "/bin/false"}},
		} {
			_, err := b.Boot(canceled, RunnerSpec{ID: 1})
			assert.ErrorIs(t, err, context.Canceled, "%s, runner %v, env %v", name, c.runner, c.env)
		}
	}
}

// A call whose connection broke waits up to a second (twice lostGrace)
// for the node to go down, to say why; after that it says the connection
// was lost.
func TestLostCallWaitsASecondForTheReason(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		done := make(chan struct{})
		var reason error
		go func() {
			time.Sleep(time.Second - time.Millisecond)
			reason = errors.New("exit status 3")
			close(done)
		}()
		err := lostError(done, &reason, func() error { return errors.New("connection lost") })
		assert.ErrorIs(t, err, ErrRunnerDown)
		assert.ErrorContains(t, err, "exit status 3")

		start := time.Now()
		err = lostError(make(chan struct{}), &reason, func() error { return errors.New("connection lost") })
		assert.EqualError(t, err, "connection lost")
		assert.Equal(t, time.Second, time.Since(start))
	})
}

// A runner that refuses to serve as another build fails its boot as
// version skew, which retrying cannot fix; other errors pass unchanged.
func TestARunnersRefusalIsVersionSkew(t *testing.T) {
	err := refusedBoot(&session.RefusedError{Code: wire.CodeVersionSkew, Message: "runner build go:B"})
	assert.ErrorIs(t, err, ErrVersionSkew)
	assert.ErrorIs(t, err, ErrBootFailed)
	assert.ErrorContains(t, err, "runner build go:B")
	other := &session.RefusedError{Code: wire.CodeProtocol, Message: "?"}
	assert.Same(t, error(other), refusedBoot(other))
	assert.Same(t, io.EOF, refusedBoot(io.EOF))
	n := &processNode{child: &childProc{}}
	assert.ErrorIs(t, n.bootError(context.Background(), &session.RefusedError{Code: wire.CodeVersionSkew}), ErrVersionSkew)
}

// A runner's environment is this process's, without a FLAME_PARENT of
// its own, then the backend's extras, then the runner's FLAME_PARENT.
func TestRunnerEnvironmentCarriesOnlyItsOwnParent(t *testing.T) {
	t.Setenv(envParent, "theirs")
	t.Setenv("GOFLAME_TEST_KEPT", "yes")
	info := parentInfo{V: parentInfoVersion, Runner: 3}
	env := runnerEnv([]string{"EXTRA=1"}, info)
	var parents []string
	for _, kv := range env {
		if strings.HasPrefix(kv, envParent+"=") {
			parents = append(parents, kv)
		}
	}
	assert.Equal(t, []string{envParent + "=" + info.encode()}, parents)
	assert.Contains(t, env, "GOFLAME_TEST_KEPT=yes")
	assert.Equal(t, []string{"EXTRA=1", envParent + "=" + info.encode()}, env[len(env)-2:])
}

// A Go build ID note is read whole when the ID fills it to its last byte,
// and refused when it is not one.
func TestBuildIDNoteIsReadToItsEnd(t *testing.T) {
	note := func(nameLen uint32, name string, id string, pad int) []byte {
		d := binary.LittleEndian.AppendUint32(nil, nameLen)
		d = binary.LittleEndian.AppendUint32(d, uint32(len(id)))
		d = binary.LittleEndian.AppendUint32(d, 4) // the note's type
		d = append(d, name...)
		d = append(d, id...)
		return append(d, make([]byte, pad)...)
	}
	le := binary.LittleEndian
	assert.Equal(t, "abcd/efgh", parseBuildIDNote(note(4, "Go\x00\x00", "abcd/efgh", 3), le))
	assert.Equal(t, "abcd/efgh", parseBuildIDNote(note(4, "Go\x00\x00", "abcd/efgh", 0), le), "an ID that ends the note")
	assert.Empty(t, parseBuildIDNote(note(4, "Go\x00\x00", "abcd/efgh", 0)[:24], le), "an ID cut short")
	assert.Empty(t, parseBuildIDNote(note(4, "GNU\x00", "abcd/efgh", 3), le), "another note")
	assert.Empty(t, parseBuildIDNote(note(5, "Go\x00\x00", "abcd/efgh", 3), le), "another name length")
	assert.Empty(t, parseBuildIDNote(note(4, "Go\x00\x00", "", 0)[:15], le), "too short for a note")
}

// A runner's output is logged a line at a time, a last line without its
// newline included and nothing more at the end; the last stderr lines
// are kept for boot errors.
func TestRunnerOutputIsLoggedLineByLine(t *testing.T) {
	var logs syncBuffer
	c := &childProc{log: newTextLogger(&logs)}
	r, w, err := os.Pipe()
	require.NoError(t, err)
	c.outputs.Add(1)
	go c.readOutput(r, "stderr")
	for i := range 9 {
		fmt.Fprintf(w, "line %d\n", i)
	}
	fmt.Fprint(w, "last words")
	w.Close()
	c.outputs.Wait()
	r.Close()
	lines := logLines(&logs)
	require.Len(t, lines, 10)
	assert.Contains(t, lines[0], `line="line 0"`)
	assert.Contains(t, lines[9], `line="last words"`)
	assert.Len(t, c.tail, tailLines)
	assert.Equal(t, "last words", c.tail[tailLines-1])
	assert.Equal(t, "line 2", c.tail[0])

	// Output that ends with its newline ends there: no empty line after.
	var out syncBuffer
	c = &childProc{log: newTextLogger(&out)}
	r, w, err = os.Pipe()
	require.NoError(t, err)
	c.outputs.Add(1)
	go c.readOutput(r, "stdout")
	fmt.Fprint(w, "one\ntwo\n")
	w.Close()
	c.outputs.Wait()
	r.Close()
	assert.Len(t, logLines(&out), 2)
	assert.Empty(t, c.tail, "stdout is not kept")
}

// A boot whose runner never says READY fails when its ctx ends: past the
// boot timeout with a hint at the usual cause, canceled as canceled; the
// child is killed either way.
func TestProcessBootThatNeverGetsReadySaysWhy(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	require.NoError(t, err)
	b := ProcessBackend{Path: sleep, Args: []string{"60"}, Logger: slog.New(slog.DiscardHandler)}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = b.Boot(ctx, RunnerSpec{ID: 1})
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, "no READY within the boot timeout (does the program's main call flame.Main() first?)")

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	_, err = b.Boot(ctx, RunnerSpec{ID: 2})
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorContains(t, err, "boot canceled")
}

// Shutting a runner down lets its calls finish: SHUTDOWN, not SIGTERM
// (which would cancel them), while the connection takes it.
func TestProcessShutdownLetsACallInFlightFinish(t *testing.T) {
	node, err := ProcessBackend{Logger: slog.New(slog.DiscardHandler)}.Boot(context.Background(), RunnerSpec{ID: 1})
	require.NoError(t, err)
	marker := t.TempDir() + "/started"
	args, _, err := encode(CBOR, struct {
		Marker string
		For    time.Duration
	}{marker, 1500 * time.Millisecond}, false)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := node.(Invoker).Invoke(context.Background(), Invocation{Func: "test.block", Kind: KindCall, Args: args})
		done <- err
	}()
	require.Eventually(t, func() bool { _, err := os.Stat(marker); return err == nil }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, node.Shutdown(context.Background()))
	assert.NoError(t, <-done, "the call in flight was cut short")
}
