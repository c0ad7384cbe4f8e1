package wire

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// Every valid type and code has its name, the values just outside do not,
// and ParseHeader accepts exactly the valid types.
func TestTypeAndCodeRangesAreExact(t *testing.T) {
	for ty := Hello; ty <= Lane; ty++ {
		if s := ty.String(); strings.HasPrefix(s, "Type(") || s == "" {
			t.Errorf("type %d has no name: %q", ty, s)
		}
		var h [HeaderLen]byte
		AppendHeader(h[:0], ty, 0)
		if got, _, err := ParseHeader(h, 16); err != nil || got != ty {
			t.Errorf("ParseHeader(type %v) = %v, %v", ty, got, err)
		}
	}
	for _, ty := range []Type{0, Lane + 1} {
		if s := ty.String(); !strings.HasPrefix(s, "Type(") {
			t.Errorf("invalid type %d named %q", ty, s)
		}
		var h [HeaderLen]byte
		AppendHeader(h[:0], ty, 0)
		if _, _, err := ParseHeader(h, 16); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseHeader(type %d) = %v, want ErrMalformed", ty, err)
		}
	}
	for c := CodeHandler; c <= CodeProtocol; c++ {
		if s := c.String(); strings.HasPrefix(s, "Code(") {
			t.Errorf("code %d has no name", c)
		}
	}
	for _, c := range []Code{0, CodeProtocol + 1} {
		if s := c.String(); !strings.HasPrefix(s, "Code(") {
			t.Errorf("invalid code %d named %q", c, s)
		}
	}
}

// A CALL payload's bounds: the kind byte alone is too short, and the
// largest representable timeout decodes while one past it does not.
func TestDecodeCallBounds(t *testing.T) {
	if _, err := DecodeCall(nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty CALL: %v", err)
	}
	if _, err := DecodeCall([]byte{byte(KindCall)}); !errors.Is(err, ErrMalformed) {
		t.Errorf("CALL with only a kind: %v", err)
	}
	for _, k := range []Kind{KindCall, KindCast, KindPlace} {
		m := CallMsg{Kind: k, Timeout: time.Duration(1<<63 - 1), ID: "f", Args: []byte("{}")}
		frame := AppendCall(nil, m)
		got, err := DecodeCall(frame[HeaderLen:])
		if err != nil || got.Kind != k || got.Timeout != m.Timeout || got.ID != "f" || string(got.Args) != "{}" {
			t.Errorf("kind %d: %+v, %v", k, got, err)
		}
	}
	if _, err := DecodeCall([]byte{byte(KindPlace + 1), 0, 0}); !errors.Is(err, ErrMalformed) {
		t.Errorf("unknown kind: %v", err)
	}
	// uvarint of 1<<63: nine 0x80 bytes then 0x01.
	over := append([]byte{byte(KindCall)}, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0)
	if _, err := DecodeCall(over); !errors.Is(err, ErrMalformed) {
		t.Errorf("timeout 1<<63: %v, want ErrMalformed", err)
	}
}

// A frame cut short reports io.ErrUnexpectedEOF, not a clean io.EOF, so a
// reader can tell a broken peer from a closed one; other errors pass as they
// are.
func TestTruncatedFrameIsUnexpectedEOF(t *testing.T) {
	frame := AppendFrame(nil, Result, []byte("payload"))
	for cut := 1; cut < len(frame); cut++ {
		_, _, err := ReadFrame(strings.NewReader(string(frame[:cut])), 1<<10)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("frame cut at %d: %v, want io.ErrUnexpectedEOF", cut, err)
		}
	}
	if _, _, err := ReadFrame(strings.NewReader(""), 1<<10); err != io.EOF {
		t.Fatalf("no frame at all: %v, want io.EOF", err)
	}
	boom := errors.New("boom")
	if _, _, err := ReadFrame(iotest.ErrReader(boom), 1<<10); !errors.Is(err, boom) {
		t.Fatalf("reader error: %v, want it passed through", err)
	}
}
