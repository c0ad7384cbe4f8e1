package wire

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The numbers of frame types and error codes are the protocol: a parent and
// a runner of other builds must still read each other's HELLO to report the
// skew, and an ERROR's code to classify it. They never change.
func TestFrameTypeAndErrorCodeNumbersAreFixed(t *testing.T) {
	types := map[Type]uint8{
		Hello: 1, Ready: 2, Call: 3, Cancel: 4, Result: 5, Error: 6, Shutdown: 7,
		Ping: 8, Lane: 9, Auth: 10, AuthOK: 11, LaneAuth: 12,
	}
	for ty, n := range types {
		assert.Equal(t, n, uint8(ty), "%v", ty)
	}
	codes := map[Code]uint8{
		CodeHandler: 1, CodeCanceled: 2, CodeDeadline: 3, CodePanic: 4, CodeNotRegistered: 5,
		CodeTooLarge: 6, CodeDecode: 7, CodeVersionSkew: 8, CodeProtocol: 9,
	}
	for c, n := range codes {
		assert.Equal(t, n, uint8(c), "%v", c)
	}
}

// writeCounter counts Write calls and remembers what each was given.
type writeCounter struct {
	bytes.Buffer
	writes [][]byte
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, p)
	return w.Buffer.Write(p)
}

// A body under copyBelow is appended to the head and written once; one of
// copyBelow bytes or more is handed to the writer as it is, uncopied, beside
// the head.
func TestWritePartsCopiesOnlyBodiesUnderTheThreshold(t *testing.T) {
	for _, n := range []int{0, 1, copyBelow - 1} {
		var w writeCounter
		require.NoError(t, WriteParts(&w, []byte("head"), bytes.Repeat([]byte{7}, n)))
		assert.Len(t, w.writes, 1, "%d bytes: one write", n)
	}
	for _, n := range []int{copyBelow, 4 * copyBelow} {
		body := bytes.Repeat([]byte{7}, n)
		var w writeCounter
		require.NoError(t, WriteParts(&w, []byte("head"), body))
		require.Len(t, w.writes, 2, "%d bytes: head and body apart", n)
		assert.Same(t, &body[0], &w.writes[1][0], "%d bytes: the body itself, not a copy", n)
	}
}

// A payload too short for its first field is refused naming that field,
// so that a broken peer's report says where the frame went wrong.
func TestDecodersNameTheFieldAShortPayloadLacks(t *testing.T) {
	check := func(err error, field string) {
		t.Helper()
		assert.ErrorIs(t, err, ErrMalformed)
		assert.ErrorContains(t, err, field)
	}
	_, err := DecodeCall(nil)
	check(err, "empty CALL")
	_, err = DecodeCall([]byte{byte(KindCall)})
	check(err, "CALL timeout")
	_, _, err = DecodeCancel(nil)
	check(err, "CANCEL lane")
	_, err = DecodeError(nil)
	check(err, "empty ERROR")
	_, err = DecodeError([]byte{byte(CodeHandler)})
	check(err, "ERROR message")
	_, _, _, err = DecodeLaneAuth(nil)
	check(err, "LANEAUTH runner")
}

// An ERROR may name exactly MaxErrorCodes registered codes, not one more.
func TestErrorCarriesUpToMaxErrorCodes(t *testing.T) {
	codes := make([]string, MaxErrorCodes)
	for i := range codes {
		codes[i] = fmt.Sprintf("app.e%d", i)
	}
	m := ErrorMsg{Code: CodeHandler, Message: "m", Registered: codes}
	got, err := DecodeError(AppendError(nil, m)[HeaderLen:])
	require.NoError(t, err)
	assert.Equal(t, codes, got.Registered)

	m.Registered = append(codes, "app.one-more")
	_, err = DecodeError(AppendError(nil, m)[HeaderLen:])
	assert.ErrorIs(t, err, ErrMalformed)
}

// Numbers that take exactly one more byte than the one before them (128 is
// the first of two bytes, 16384 of three) round-trip: the decoder's check
// that an encoding is minimal must count their length right.
func TestVarintsAtByteBoundariesRoundTrip(t *testing.T) {
	for _, n := range []uint64{0, 127, 128, 16383, 16384, 1<<63 - 1} {
		lane, call, err := DecodeCancel(AppendCancel(nil, n, n)[HeaderLen:])
		require.NoError(t, err, "%d", n)
		assert.Equal(t, n, lane)
		assert.Equal(t, n, call)
		m := CallMsg{Kind: KindCall, Timeout: time.Duration(n), ID: strings.Repeat("f", int(min(n, MaxIDLen))), Args: []byte{1}}
		back, err := DecodeCall(AppendCall(nil, m)[HeaderLen:])
		require.NoError(t, err, "%d", n)
		assert.Equal(t, m, back)
	}
}
