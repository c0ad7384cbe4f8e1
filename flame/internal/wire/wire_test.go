package wire

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	payloads := [][]byte{nil, []byte("x"), bytes.Repeat([]byte("abc"), 100_000)}
	for i, p := range payloads {
		if err := WriteFrame(&buf, Type(1+i), p); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range payloads {
		typ, got, err := ReadFrame(&buf, DefaultMaxPayload)
		if err != nil || typ != Type(1+i) || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %v %d bytes %v", i, typ, len(got), err)
		}
	}
	if _, _, err := ReadFrame(&buf, DefaultMaxPayload); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
}

func TestReadFrameSurvivesOneByteReads(t *testing.T) {
	frame := AppendFrame(nil, Result, bytes.Repeat([]byte{7}, 3*chunk+5))
	typ, p, err := ReadFrame(iotest.OneByteReader(bytes.NewReader(frame)), DefaultMaxPayload)
	if err != nil || typ != Result || len(p) != 3*chunk+5 {
		t.Fatalf("%v %d %v", typ, len(p), err)
	}
}

func TestReadFrameRefusesOversizedFrameBeforeAllocating(t *testing.T) {
	h := AppendHeader(nil, Call, 1<<31) // claims 2 GiB
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := ReadFrame(bytes.NewReader(h), 1<<20)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<10 {
		t.Fatalf("allocated %d bytes refusing a frame", grew)
	}
	// Exactly the cap is fine.
	f := AppendFrame(nil, Result, make([]byte, 100))
	if _, _, err := ReadFrame(bytes.NewReader(f), 100); err != nil {
		t.Fatalf("frame at the cap: %v", err)
	}
	if _, _, err := ReadFrame(bytes.NewReader(f), 99); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("frame over the cap: %v", err)
	}
}

func TestReadFrameAllocatesAboutWhatThePeerSent(t *testing.T) {
	// A header that claims the cap, followed by only a few bytes: the
	// reader must not allocate the cap up front.
	const max = 16 << 20
	in := append(AppendHeader(nil, Result, max), make([]byte, 1000)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := ReadFrame(bytes.NewReader(in), max)
	runtime.ReadMemStats(&after)
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 2*chunk+(16<<10) {
		t.Fatalf("allocated %d bytes for a frame cut short after 1000 bytes", grew)
	}
}

func TestReadFrameErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"short header", []byte{0, 0, 0}, io.ErrUnexpectedEOF},
		{"short payload", append(AppendHeader(nil, Result, 10), 1, 2, 3), io.ErrUnexpectedEOF},
		{"type 0", []byte{0, 0, 0, 0, 0}, ErrMalformed},
		{"unknown type", []byte{0, 0, 0, 0, 99}, ErrMalformed},
	} {
		_, _, err := ReadFrame(bytes.NewReader(tc.in), 1<<20)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestCallRoundTrip(t *testing.T) {
	for _, m := range []CallMsg{
		{Kind: KindCall, Timeout: 0, ID: "a", Args: nil},
		{Kind: KindCast, Timeout: 1500 * time.Millisecond, ID: "pkg.render", Args: []byte(`{"x":1}`)},
		{Kind: KindPlace, Timeout: 1<<63 - 1, ID: strings.Repeat("i", MaxIDLen), Args: bytes.Repeat([]byte{0}, 1000)},
	} {
		f := AppendCall(nil, m)
		if len(f) != HeaderLen+CallPayloadLen(m) {
			t.Fatalf("frame length %d, CallPayloadLen %d", len(f), CallPayloadLen(m))
		}
		typ, p, err := ReadFrame(bytes.NewReader(f), DefaultMaxPayload)
		if err != nil || typ != Call {
			t.Fatal(typ, err)
		}
		got, err := DecodeCall(p)
		if err != nil || got.Kind != m.Kind || got.Timeout != m.Timeout || got.ID != m.ID || !bytes.Equal(got.Args, m.Args) {
			t.Fatalf("got %+v %v, want %+v", got, err, m)
		}
	}
}

func TestDecodeCallRejectsMalformed(t *testing.T) {
	for name, p := range map[string][]byte{
		"empty":            nil,
		"bad kind":         {9, 0, 1, 'a'},
		"no timeout":       {0},
		"huge timeout":     {0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 'a'},
		"id past the end":  {0, 0, 5, 'a'},
		"id too long":      append([]byte{0, 0, 0x81, 0x08}, bytes.Repeat([]byte{'a'}, 1025)...),
		"truncated varint": {0, 0x80},
		"non-minimal":      {0, 0x81, 0x00, 1, 'a'},
	} {
		if _, err := DecodeCall(p); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestErrorRoundTrip(t *testing.T) {
	for _, m := range []ErrorMsg{
		{Code: CodeHandler, Message: "disk full"},
		{Code: CodePanic, Message: "boom", Stack: []byte("goroutine 1 [running]:\n...")},
		{Code: CodeProtocol, Message: ""},
		{Code: CodeHandler, Message: "thumb 7: missing", Registered: []string{"app.missing", "app.retry"}},
		{Code: CodePanic, Message: "boom", Registered: []string{"x"}, Stack: []byte("stack")},
	} {
		typ, p, err := ReadFrame(bytes.NewReader(AppendError(nil, m)), DefaultMaxPayload)
		if err != nil || typ != Error {
			t.Fatal(typ, err)
		}
		if len(p) != ErrorPayloadLen(m) {
			t.Fatalf("payload of %d bytes, ErrorPayloadLen says %d", len(p), ErrorPayloadLen(m))
		}
		got, err := DecodeError(p)
		if err != nil || got.Code != m.Code || got.Message != m.Message || !bytes.Equal(got.Stack, m.Stack) || !slices.Equal(got.Registered, m.Registered) {
			t.Fatalf("got %+v %v, want %+v", got, err, m)
		}
	}
	tooMany := []byte{1, 0, MaxErrorCodes + 1}
	for range MaxErrorCodes + 1 {
		tooMany = append(tooMany, 1, 'c')
	}
	longCode := append([]byte{1, 0, 1, MaxErrorCodeLen + 1}, bytes.Repeat([]byte{'c'}, MaxErrorCodeLen+1)...)
	for name, p := range map[string][]byte{
		"empty": nil, "code 0": {0, 0}, "bad code": {200, 0}, "msg past the end": {1, 9, 'a'},
		"no code count": {1, 0}, "code past the end": {1, 0, 1, 5, 'a'}, "empty code": {1, 0, 1, 0},
		"too many codes": tooMany, "code too long": longCode,
	} {
		if _, err := DecodeError(p); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestHelloRoundTrip(t *testing.T) {
	m := HelloMsg{Proto: ProtocolVersion, Build: "go:abc/def", Registry: "3:0123", PID: 42}
	typ, p, err := ReadFrame(bytes.NewReader(AppendHello(nil, m)), DefaultMaxPayload)
	if err != nil || typ != Hello {
		t.Fatal(typ, err)
	}
	got, err := DecodeHello(p)
	if err != nil || got != m {
		t.Fatalf("got %+v %v", got, err)
	}
	if _, err := DecodeHello([]byte("{")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("bad hello: %v", err)
	}
}

func TestNames(t *testing.T) {
	if Call.String() != "CALL" || Type(0).String() != "Type(0)" || CodeNotRegistered.String() != "not_registered" || Code(0).String() != "Code(0)" {
		t.Fatal(Call, Type(0), CodeNotRegistered, Code(0))
	}
}

func TestControlMessagesRoundTripAndRejectTrailingBytes(t *testing.T) {
	for _, c := range []struct{ lane, call uint64 }{{0, 0}, {1, 1}, {300, 1 << 40}, {1<<64 - 1, 1<<64 - 1}} {
		f := AppendCancel(nil, c.lane, c.call)
		typ, p, err := ReadFrame(bytes.NewReader(f), 64)
		if err != nil || typ != Cancel {
			t.Fatalf("ReadFrame(CANCEL) = %v, %v", typ, err)
		}
		lane, call, err := DecodeCancel(p)
		if err != nil || lane != c.lane || call != c.call {
			t.Fatalf("CANCEL %d/%d decodes to %d/%d, %v", c.lane, c.call, lane, call, err)
		}
		if _, _, err := DecodeCancel(append(p, 0)); err == nil {
			t.Fatal("CANCEL with a trailing byte accepted")
		}
		f = AppendLane(nil, c.lane)
		if typ, p, err = ReadFrame(bytes.NewReader(f), 64); err != nil || typ != Lane {
			t.Fatalf("ReadFrame(LANE) = %v, %v", typ, err)
		}
		if lane, err := DecodeLane(p); err != nil || lane != c.lane {
			t.Fatalf("LANE %d decodes to %d, %v", c.lane, lane, err)
		}
		if _, err := DecodeLane(append(p, 0)); err == nil {
			t.Fatal("LANE with a trailing byte accepted")
		}
	}
	for _, bad := range [][]byte{nil, {0x80}, {0x80, 0x00}, {1}} {
		if _, _, err := DecodeCancel(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeCancel(%x) = %v; want ErrMalformed", bad, err)
		}
	}
	for _, bad := range [][]byte{nil, {0x80}, {0x80, 0x00}} {
		if _, err := DecodeLane(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeLane(%x) = %v; want ErrMalformed", bad, err)
		}
	}
}

// WriteFrame writes a whole frame with one Write.
func WriteFrame(w io.Writer, t Type, payload []byte) error {
	_, err := w.Write(AppendFrame(make([]byte, 0, HeaderLen+len(payload)), t, payload))
	return err
}
