//go:build unix

package flame

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/goflame/goflame/flame/internal/session"
	"github.com/goflame/goflame/flame/internal/wire"
)

func TestBuildIDIsTheRunningExecutablesGoBuildID(t *testing.T) {
	id := buildID()
	if !strings.HasPrefix(id, "go:") || len(id) < 20 {
		t.Fatalf("buildID() = %q; want the Go build ID of the test binary", id)
	}
	if buildID() != id {
		t.Fatal("buildID is not stable")
	}
	if goBuildID("/nonexistent") != "" || goBuildID("/proc/self/status") != "" {
		t.Fatal("goBuildID of a non-ELF file must be empty")
	}
}

func TestCheckHelloNamesEveryKindOfSkew(t *testing.T) {
	info := parentInfo{Build: "go:A", Registry: "3:aa"}
	ok := wire.HelloMsg{Proto: wire.ProtocolVersion, Build: "go:A", Registry: "3:aa"}
	if err := checkHello(ok, info); err != nil {
		t.Fatal(err)
	}
	for want, h := range map[string]wire.HelloMsg{
		"protocol 99":                     {Proto: 99, Build: "go:A", Registry: "3:aa"},
		`runner build "go:B"`:             {Proto: wire.ProtocolVersion, Build: "go:B", Registry: "3:aa"},
		"must be the same binary":         {Proto: wire.ProtocolVersion, Build: "go:B", Registry: "3:aa"},
		"runner registry 4:bb":            {Proto: wire.ProtocolVersion, Build: "go:A", Registry: "4:bb"},
		"must register the same function": {Proto: wire.ProtocolVersion, Build: "go:A", Registry: "4:bb"},
	} {
		err := checkHello(h, info)
		if !errors.Is(err, ErrVersionSkew) || !strings.Contains(err.Error(), want) {
			t.Errorf("checkHello(%+v) = %v; want ErrVersionSkew mentioning %q", h, err, want)
		}
	}
}

func TestParentInfoRoundTripAndRejects(t *testing.T) {
	pi := parentInfo{V: parentInfoVersion, Pool: "p", Runner: 3, Conn: "fd:3", Build: "go:x", Registry: "1:y", MaxMsg: 10, KeepAliveMS: 5, ParentPID: 9}
	got, err := decodeParentInfo(pi.encode())
	if err != nil || got != pi {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	bad := pi
	bad.V = 2
	if _, err := decodeParentInfo(bad.encode()); !errors.Is(err, ErrVersionSkew) {
		t.Fatalf("future format: %v; want ErrVersionSkew", err)
	}
	bad = pi
	bad.MaxMsg = 0
	if _, err := decodeParentInfo(bad.encode()); err == nil {
		t.Fatal("zero MaxMsg accepted")
	}
	if _, err := decodeParentInfo("%%%"); err == nil {
		t.Fatal("garbage accepted")
	}
}

func TestRegistryHashCoversIDsAndTypes(t *testing.T) {
	h := registryHash()
	if !strings.Contains(h, ":") || registryHash() != h {
		t.Fatalf("registryHash() = %q", h)
	}
	for _, r := range registry.funcs {
		if r.sig == "" {
			t.Fatalf("%s has no signature", r.id)
		}
	}
	if got := registry.funcs["test.echo"].sig; got != "flame_test.echoIn -> flame_test.echoOut" {
		t.Fatalf("signature of test.echo = %q", got)
	}
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
		if !errors.Is(e, target) {
			t.Errorf("code %s does not match %v", code, target)
		}
		back := funcErrorOf("f", e.toWire())
		if back.Code != code {
			t.Errorf("code %s crosses the wire as %s", code, back.Code)
		}
		if errors.Is(&FuncError{Code: CodeHandler}, target) {
			t.Errorf("a handler error matches %v", target)
		}
	}
	// A handler's context errors keep their meaning; a FuncError from a
	// nested call keeps its code.
	if fe := asFuncError("f", context.DeadlineExceeded); fe.Code != "deadline" {
		t.Fatalf("deadline: %+v", fe)
	}
	nested := &FuncError{Func: "g", Code: "not_registered", Message: "no g"}
	if fe := asFuncError("f", nested); fe.Code != "not_registered" || fe.Func != "f" {
		t.Fatalf("nested: %+v", fe)
	}
}

func TestRunnerLostErrorMatchesErrRunnerDown(t *testing.T) {
	err := error(&runnerLostError{id: 2, pid: 99, state: "signal: killed"})
	if !errors.Is(err, ErrRunnerDown) || !strings.Contains(err.Error(), "runner 2 (pid 99) went down: signal: killed") {
		t.Fatalf("%v", err)
	}
}

// A call that fails because the connection is gone is ErrRunnerDown; once
// the node is down, the error says why.
func TestLostCallIsRunnerDownSayingWhy(t *testing.T) {
	n := &processNode{id: 4, child: &childProc{pid: 99}, done: make(chan struct{})}
	n.reason = &runnerLostError{id: 4, pid: 99, state: "signal: killed"}
	close(n.done)
	got := n.lost(fmt.Errorf("%w: reading the reply: %w", session.ErrLost, io.EOF))
	if !errors.Is(got, ErrRunnerDown) || !strings.Contains(got.Error(), "signal: killed") {
		t.Errorf("lost call -> %v; want ErrRunnerDown saying why", got)
	}
}
