//go:build linux

package flame

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

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
	for code, target := range map[wire.Code]error{
		wire.CodeCanceled:      context.Canceled,
		wire.CodeDeadline:      context.DeadlineExceeded,
		wire.CodeNotRegistered: ErrUnknownFunc,
		wire.CodeTooLarge:      ErrTooLarge,
		wire.CodeDecode:        ErrBadPayload,
		wire.CodeVersionSkew:   ErrVersionSkew,
	} {
		e := &FuncError{Func: "f", Code: code.String(), Message: "m"}
		if !errors.Is(e, target) {
			t.Errorf("code %s does not match %v", code, target)
		}
		if codeOf(code.String()) != code {
			t.Errorf("codeOf(%q) = %v", code.String(), codeOf(code.String()))
		}
		if errors.Is(&FuncError{Code: "handler"}, target) {
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

func TestBatchConnKeepsOrderAndFlushesOnClose(t *testing.T) {
	a, b := net.Pipe()
	bc := newBatchConn(a)
	got := make(chan []byte)
	go func() {
		all, _ := io.ReadAll(b)
		got <- all
	}()
	var want bytes.Buffer
	for i := range 20000 {
		chunk := []byte(fmt.Sprintf("frame %d;", i))
		want.Write(chunk)
		if n, err := bc.Write(chunk); err != nil || n != len(chunk) {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	if err := bc.Close(); err != nil {
		t.Fatal(err)
	}
	if all := <-got; !bytes.Equal(all, want.Bytes()) {
		t.Fatalf("peer got %d bytes, want %d in order", len(all), want.Len())
	}
	if _, err := bc.Write([]byte("late")); err == nil {
		t.Fatal("write after Close succeeded")
	}
	if err := bc.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestBatchConnReportsWriteErrors(t *testing.T) {
	a, b := net.Pipe()
	b.Close()
	bc := newBatchConn(a)
	defer bc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := bc.Write([]byte("x")); err != nil {
			return // the flusher's error reached the writer
		}
		if time.Now().After(deadline) {
			t.Fatal("writes to a closed peer keep succeeding")
		}
		time.Sleep(time.Millisecond)
	}
}
