package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

// fuzzMax is the payload cap in the fuzz targets: small, so that the
// fuzzer reaches it.
const fuzzMax = 4096

// FuzzReadFrame feeds hostile bytes to the frame reader and the message
// decoders: they must never panic, never return a payload above the cap,
// and whatever they accept must encode back to the same bytes.
//
//	go test -fuzz FuzzReadFrame ./flame/internal/wire
func FuzzReadFrame(f *testing.F) {
	f.Add(AppendCall(nil, CallMsg{Kind: KindCall, Timeout: 5e9, ID: "pkg.fn", Args: []byte(`{"a":1}`)}))
	f.Add(AppendError(nil, ErrorMsg{Code: CodePanic, Message: "boom", Stack: []byte("stack")}))
	f.Add(AppendHello(nil, HelloMsg{Proto: 1, Build: "go:x", Registry: "1:ab", PID: 1}))
	f.Add(append(AppendFrame(nil, Ready, nil), AppendFrame(nil, Result, []byte("42"))...))
	f.Add(AppendHeader(nil, Result, 1<<31))
	f.Add([]byte{0, 0, 0, 1, 9, 0})
	f.Add(append(AppendCancel(nil, 3, 7), AppendLane(nil, 4)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		for {
			typ, p, err := ReadFrame(r, fuzzMax)
			if err != nil {
				require.Nil(t, p, "payload returned with error %v", err)
				require.True(t, err == io.EOF || err == io.ErrUnexpectedEOF || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrMalformed),
					"unexpected error %v", err)
				return
			}
			require.LessOrEqual(t, len(p), fuzzMax, "payload of %d bytes above the cap", len(p))
			require.LessOrEqual(t, cap(p), max(fuzzMax, len(p)), "payload buffer of %d bytes above the cap", cap(p))
			checkMessage(t, typ, p)
		}
	})
}

// FuzzDecodeCall decodes hostile CALL payloads.
func FuzzDecodeCall(f *testing.F) {
	f.Add([]byte{0, 0, 1, 'a'})
	f.Add(AppendCall(nil, CallMsg{Kind: KindPlace, Timeout: 1, ID: "x", Args: []byte("[]")})[HeaderLen:])
	f.Add([]byte{0, 0x80, 0x80})
	f.Fuzz(func(t *testing.T, p []byte) { checkMessage(t, Call, p) })
}

// FuzzDecodeError decodes hostile ERROR payloads.
func FuzzDecodeError(f *testing.F) {
	f.Add(AppendError(nil, ErrorMsg{Code: CodeHandler, Message: "m"})[HeaderLen:])
	f.Add(AppendError(nil, ErrorMsg{Code: CodeHandler, Message: "m", Registered: []string{"app.missing", "b"}, Stack: []byte("s")})[HeaderLen:])
	f.Add([]byte{4, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, p []byte) { checkMessage(t, Error, p) })
}

// FuzzDecodeControl decodes hostile CANCEL and LANE payloads.
func FuzzDecodeControl(f *testing.F) {
	f.Add(AppendCancel(nil, 1, 1)[HeaderLen:])
	f.Add(AppendCancel(nil, 1<<64-1, 1<<63)[HeaderLen:])
	f.Add(AppendLane(nil, 300)[HeaderLen:])
	f.Add([]byte{0x80, 0x00})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x10, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		checkMessage(t, Cancel, p)
		checkMessage(t, Lane, p)
	})
}

// checkMessage decodes p as a message of type typ; if it decodes, it must
// encode back to the same bytes.
func checkMessage(t *testing.T, typ Type, p []byte) {
	t.Helper()
	// A message re-encodes to at least one byte, so Equal on the bytes
	// compares as bytes.Equal does.
	switch typ {
	case Call:
		m, err := DecodeCall(p)
		if err != nil {
			require.ErrorIs(t, err, ErrMalformed, "DecodeCall")
			return
		}
		require.LessOrEqual(t, len(m.ID), MaxIDLen, "id of %d bytes", len(m.ID))
		again := AppendCall(nil, m)[HeaderLen:]
		require.Equal(t, p, again, "CALL %+v re-encodes to %x, was %x", m, again, p)
	case Error:
		m, err := DecodeError(p)
		if err != nil {
			require.ErrorIs(t, err, ErrMalformed, "DecodeError")
			return
		}
		again := AppendError(nil, m)[HeaderLen:]
		require.Equal(t, p, again, "ERROR %+v re-encodes to %x, was %x", m, again, p)
	case Cancel:
		lane, call, err := DecodeCancel(p)
		if err != nil {
			require.ErrorIs(t, err, ErrMalformed, "DecodeCancel")
			return
		}
		again := AppendCancel(nil, lane, call)[HeaderLen:]
		require.Equal(t, p, again, "CANCEL %d/%d re-encodes to %x, was %x", lane, call, again, p)
	case Lane:
		lane, err := DecodeLane(p)
		if err != nil {
			require.ErrorIs(t, err, ErrMalformed, "DecodeLane")
			return
		}
		again := AppendLane(nil, lane)[HeaderLen:]
		require.Equal(t, p, again, "LANE %d re-encodes to %x, was %x", lane, again, p)
	case Hello:
		_, _ = DecodeHello(p)
	}
}
