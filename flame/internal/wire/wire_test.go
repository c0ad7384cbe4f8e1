package wire

import (
	"bytes"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	payloads := [][]byte{nil, []byte("x"), bytes.Repeat([]byte("abc"), 100_000)}
	for i, p := range payloads {
		require.NoError(t, WriteFrame(&buf, Type(1+i), p))
	}
	for i, want := range payloads {
		typ, got, err := ReadFrame(&buf, DefaultMaxPayload)
		require.NoError(t, err, "frame %d: %v %d bytes", i, typ, len(got))
		require.Equal(t, Type(1+i), typ, "frame %d: %v %d bytes", i, typ, len(got))
		// bytes.Equal, not Equal: the nil payload may come back empty, and
		// on a mismatch Equal would dump the 300 kB payload.
		require.True(t, bytes.Equal(got, want), "frame %d: %v %d bytes, want %d", i, typ, len(got), len(want))
	}
	_, _, err := ReadFrame(&buf, DefaultMaxPayload)
	require.Same(t, io.EOF, err, "at the end: %v, want io.EOF itself", err)
}

func TestReadFrameSurvivesOneByteReads(t *testing.T) {
	frame := AppendFrame(nil, Result, bytes.Repeat([]byte{7}, 3*chunk+5))
	typ, p, err := ReadFrame(iotest.OneByteReader(bytes.NewReader(frame)), DefaultMaxPayload)
	require.NoError(t, err, "%v %d bytes", typ, len(p))
	require.Equal(t, Result, typ, "%v %d bytes", typ, len(p))
	require.Equal(t, 3*chunk+5, len(p), "%v %d bytes", typ, len(p)) // not Len, which would print the payload
}

func TestReadFrameRefusesOversizedFrameBeforeAllocating(t *testing.T) {
	h := AppendHeader(nil, Call, 1<<31) // claims 2 GiB
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := ReadFrame(bytes.NewReader(h), 1<<20)
	runtime.ReadMemStats(&after)
	require.ErrorIs(t, err, ErrTooLarge)
	require.LessOrEqual(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<10), "bytes allocated refusing a frame")
	// Exactly the cap is fine.
	f := AppendFrame(nil, Result, make([]byte, 100))
	_, _, err = ReadFrame(bytes.NewReader(f), 100)
	require.NoError(t, err, "frame at the cap")
	_, _, err = ReadFrame(bytes.NewReader(f), 99)
	require.ErrorIs(t, err, ErrTooLarge, "frame over the cap")
}

func TestReadFrameAllocatesAChunkUntilAChunkArrived(t *testing.T) {
	// A header that claims the cap, followed by only a few bytes: the
	// reader must not allocate the cap up front, only its first chunk.
	const max = 16 << 20
	in := append(AppendHeader(nil, Result, max), make([]byte, 1000)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := ReadFrame(bytes.NewReader(in), max)
	runtime.ReadMemStats(&after)
	require.Same(t, io.ErrUnexpectedEOF, err, "err = %v, want io.ErrUnexpectedEOF itself", err)
	require.LessOrEqual(t, after.TotalAlloc-before.TotalAlloc, uint64(chunk+(16<<10)), "bytes allocated for a frame cut short after 1000 bytes")
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
		assert.ErrorIs(t, err, tc.want, tc.name)
	}
}

func TestCallRoundTrip(t *testing.T) {
	for _, m := range []CallMsg{
		{Kind: KindCall, Timeout: 0, ID: "a", Args: nil},
		{Kind: KindCast, Timeout: 1500 * time.Millisecond, ID: "pkg.render", Args: []byte(`{"x":1}`)},
		{Kind: KindPlace, Timeout: 1<<63 - 1, ID: strings.Repeat("i", MaxIDLen), Args: bytes.Repeat([]byte{0}, 1000)},
	} {
		f := AppendCall(nil, m)
		require.Len(t, f, HeaderLen+CallPayloadLen(m), "frame length %d, CallPayloadLen %d", len(f), CallPayloadLen(m))
		typ, p, err := ReadFrame(bytes.NewReader(f), DefaultMaxPayload)
		require.NoError(t, err, "%v", typ)
		require.Equal(t, Call, typ, "%v", typ)
		got, err := DecodeCall(p)
		require.NoError(t, err, "got %+v, want %+v", got, m)
		require.Equal(t, m.Kind, got.Kind, "got %+v, want %+v", got, m)
		require.Equal(t, m.Timeout, got.Timeout, "got %+v, want %+v", got, m)
		require.Equal(t, m.ID, got.ID, "got %+v, want %+v", got, m)
		// bytes.Equal, not Equal: nil Args may come back empty.
		require.True(t, bytes.Equal(got.Args, m.Args), "got %+v, want %+v", got, m)
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
		_, err := DecodeCall(p)
		assert.ErrorIs(t, err, ErrMalformed, name)
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
		require.NoError(t, err, "%v", typ)
		require.Equal(t, Error, typ, "%v", typ)
		require.Len(t, p, ErrorPayloadLen(m), "payload of %d bytes, ErrorPayloadLen says %d", len(p), ErrorPayloadLen(m))
		got, err := DecodeError(p)
		require.NoError(t, err, "got %+v, want %+v", got, m)
		require.Equal(t, m.Code, got.Code, "got %+v, want %+v", got, m)
		require.Equal(t, m.Message, got.Message, "got %+v, want %+v", got, m)
		// bytes.Equal and slices.Equal, not Equal: nil may come back empty.
		require.True(t, bytes.Equal(got.Stack, m.Stack), "got %+v, want %+v", got, m)
		require.True(t, slices.Equal(got.Registered, m.Registered), "got %+v, want %+v", got, m)
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
		_, err := DecodeError(p)
		assert.ErrorIs(t, err, ErrMalformed, name)
	}
}

func TestHelloRoundTrip(t *testing.T) {
	m := HelloMsg{Proto: ProtocolVersion, Build: "go:abc/def", Registry: "3:0123", PID: 42}
	typ, p, err := ReadFrame(bytes.NewReader(AppendHello(nil, m)), DefaultMaxPayload)
	require.NoError(t, err, "%v", typ)
	require.Equal(t, Hello, typ, "%v", typ)
	got, err := DecodeHello(p)
	require.NoError(t, err, "got %+v", got)
	require.Equal(t, m, got)
	_, err = DecodeHello([]byte("{"))
	require.ErrorIs(t, err, ErrMalformed, "bad hello")
}

func TestNames(t *testing.T) {
	require.Equal(t, "CALL", Call.String())
	require.Equal(t, "Type(0)", Type(0).String())
	require.Equal(t, "not_registered", CodeNotRegistered.String())
	require.Equal(t, "Code(0)", Code(0).String())
}

func TestControlMessagesRoundTripAndRejectTrailingBytes(t *testing.T) {
	for _, c := range []struct{ lane, call uint64 }{{0, 0}, {1, 1}, {300, 1 << 40}, {1<<64 - 1, 1<<64 - 1}} {
		f := AppendCancel(nil, c.lane, c.call)
		typ, p, err := ReadFrame(bytes.NewReader(f), 64)
		require.NoError(t, err, "ReadFrame(CANCEL) = %v", typ)
		require.Equal(t, Cancel, typ, "ReadFrame(CANCEL) = %v", typ)
		lane, call, err := DecodeCancel(p)
		require.NoError(t, err, "CANCEL %d/%d decodes to %d/%d", c.lane, c.call, lane, call)
		require.Equal(t, c.lane, lane, "CANCEL %d/%d decodes to %d/%d", c.lane, c.call, lane, call)
		require.Equal(t, c.call, call, "CANCEL %d/%d decodes to %d/%d", c.lane, c.call, lane, call)
		_, _, err = DecodeCancel(append(p, 0))
		require.Error(t, err, "CANCEL with a trailing byte accepted")
		f = AppendLane(nil, c.lane)
		typ, p, err = ReadFrame(bytes.NewReader(f), 64)
		require.NoError(t, err, "ReadFrame(LANE) = %v", typ)
		require.Equal(t, Lane, typ, "ReadFrame(LANE) = %v", typ)
		lane, err = DecodeLane(p)
		require.NoError(t, err, "LANE %d decodes to %d", c.lane, lane)
		require.Equal(t, c.lane, lane, "LANE %d decodes to %d", c.lane, lane)
		_, err = DecodeLane(append(p, 0))
		require.Error(t, err, "LANE with a trailing byte accepted")
	}
	for _, bad := range [][]byte{nil, {0x80}, {0x80, 0x00}, {1}} {
		_, _, err := DecodeCancel(bad)
		assert.ErrorIs(t, err, ErrMalformed, "DecodeCancel(%x)", bad)
	}
	for _, bad := range [][]byte{nil, {0x80}, {0x80, 0x00}} {
		_, err := DecodeLane(bad)
		assert.ErrorIs(t, err, ErrMalformed, "DecodeLane(%x)", bad)
	}
}

// WriteFrame writes a whole frame with one Write.
func WriteFrame(w io.Writer, t Type, payload []byte) error {
	_, err := w.Write(AppendFrame(make([]byte, 0, HeaderLen+len(payload)), t, payload))
	return err
}

// WriteParts puts the same bytes on the wire as a frame built whole,
// whether it copies a small body or writes a large one beside its head.
func TestWritePartsWritesTheWholeFrame(t *testing.T) {
	for _, n := range []int{0, 10, copyBelow - 1, copyBelow, 3 * chunk} {
		m := CallMsg{Kind: KindCast, Timeout: time.Second, ID: "f", Args: bytes.Repeat([]byte{9}, n)}
		var w bytes.Buffer
		require.NoError(t, WriteParts(&w, AppendCallHead(nil, m), m.Args))
		assert.True(t, bytes.Equal(AppendCall(nil, m), w.Bytes()), "%d bytes of arguments", n)
		typ, p, err := ReadFrame(&w, DefaultMaxPayload)
		require.NoError(t, err)
		require.Equal(t, Call, typ)
		back, err := DecodeCall(p)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(m.Args, back.Args))
	}
}
