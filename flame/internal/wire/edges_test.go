package wire

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every valid type and code has its name, the values just outside do not,
// and ParseHeader accepts exactly the valid types.
func TestTypeAndCodeRangesAreExact(t *testing.T) {
	for ty := Hello; ty <= LaneAuth; ty++ {
		s := ty.String()
		assert.False(t, strings.HasPrefix(s, "Type("), "type %d has no name: %q", ty, s)
		assert.NotEmpty(t, s, "type %d has no name: %q", ty, s)
		var h [HeaderLen]byte
		AppendHeader(h[:0], ty, 0)
		got, _, err := ParseHeader(h, 16)
		assert.NoError(t, err, "ParseHeader(type %v) = %v", ty, got)
		assert.Equal(t, ty, got, "ParseHeader(type %v) = %v", ty, got)
	}
	for _, ty := range []Type{0, LaneAuth + 1} {
		s := ty.String()
		assert.True(t, strings.HasPrefix(s, "Type("), "invalid type %d named %q", ty, s)
		var h [HeaderLen]byte
		AppendHeader(h[:0], ty, 0)
		_, _, err := ParseHeader(h, 16)
		assert.ErrorIs(t, err, ErrMalformed, "ParseHeader(type %d)", ty)
	}
	for c := CodeHandler; c <= CodeProtocol; c++ {
		assert.False(t, strings.HasPrefix(c.String(), "Code("), "code %d has no name", c)
	}
	for _, c := range []Code{0, CodeProtocol + 1} {
		s := c.String()
		assert.True(t, strings.HasPrefix(s, "Code("), "invalid code %d named %q", c, s)
	}
}

// A CALL payload's bounds: the kind byte alone is too short, and the
// largest representable timeout decodes while one past it does not.
func TestDecodeCallBounds(t *testing.T) {
	_, err := DecodeCall(nil)
	assert.ErrorIs(t, err, ErrMalformed, "empty CALL")
	_, err = DecodeCall([]byte{byte(KindCall)})
	assert.ErrorIs(t, err, ErrMalformed, "CALL with only a kind")
	for _, k := range []Kind{KindCall, KindCast, KindPlace} {
		m := CallMsg{Kind: k, Timeout: time.Duration(1<<63 - 1), ID: "f", Args: []byte("{}")}
		frame := AppendCall(nil, m)
		got, err := DecodeCall(frame[HeaderLen:])
		assert.NoError(t, err, "kind %d: %+v", k, got)
		// m's Args are not empty, so Equal compares them as bytes.Equal would.
		assert.Equal(t, m, got, "kind %d", k)
	}
	_, err = DecodeCall([]byte{byte(KindPlace + 1), 0, 0})
	assert.ErrorIs(t, err, ErrMalformed, "unknown kind")
	// uvarint of 1<<63: nine 0x80 bytes then 0x01.
	over := append([]byte{byte(KindCall)}, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0)
	_, err = DecodeCall(over)
	assert.ErrorIs(t, err, ErrMalformed, "timeout 1<<63")
}

// A frame cut short reports io.ErrUnexpectedEOF, not a clean io.EOF, so a
// reader can tell a broken peer from a closed one; other errors pass as they
// are.
func TestTruncatedFrameIsUnexpectedEOF(t *testing.T) {
	frame := AppendFrame(nil, Result, []byte("payload"))
	for cut := 1; cut < len(frame); cut++ {
		_, _, err := ReadFrame(strings.NewReader(string(frame[:cut])), 1<<10)
		require.ErrorIs(t, err, io.ErrUnexpectedEOF, "frame cut at %d", cut)
	}
	_, _, err := ReadFrame(strings.NewReader(""), 1<<10)
	require.Same(t, io.EOF, err, "no frame at all: %v, want io.EOF itself", err)
	boom := errors.New("boom")
	_, _, err = ReadFrame(iotest.ErrReader(boom), 1<<10)
	require.ErrorIs(t, err, boom, "reader error: want it passed through")
}
