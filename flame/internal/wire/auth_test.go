package wire

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAuthFramesRoundTrip(t *testing.T) {
	var tok [SecretLen]byte
	for i := range tok {
		tok[i] = byte(i)
	}
	typ, p, err := ReadFrame(bytes.NewReader(AppendAuth(nil, 300, tok)), AuthMaxPayload)
	require.NoError(t, err)
	require.Equal(t, Auth, typ)
	r, got, err := DecodeAuth(p)
	require.NoError(t, err)
	assert.Equal(t, uint64(300), r)
	assert.Equal(t, tok, got)

	typ, p, err = ReadFrame(bytes.NewReader(AppendAuthOK(nil, tok)), AuthMaxPayload)
	require.NoError(t, err)
	require.Equal(t, AuthOK, typ)
	sec, err := DecodeAuthOK(p)
	require.NoError(t, err)
	assert.Equal(t, tok, sec)

	typ, p, err = ReadFrame(bytes.NewReader(AppendLaneAuth(nil, 7, 1<<40, tok)), AuthMaxPayload)
	require.NoError(t, err)
	require.Equal(t, LaneAuth, typ)
	r, lane, sec, err := DecodeLaneAuth(p)
	require.NoError(t, err)
	assert.Equal(t, uint64(7), r)
	assert.Equal(t, uint64(1<<40), lane)
	assert.Equal(t, tok, sec)
}

func TestAuthDecodersRefuseMalformedPayloads(t *testing.T) {
	var tok [SecretLen]byte
	good := AppendAuth(nil, 3, tok)[HeaderLen:]
	for name, p := range map[string][]byte{
		"empty": nil, "short token": good[:len(good)-1], "long token": append(append([]byte{}, good...), 0),
		"non-minimal runner": append([]byte{0x83, 0x00}, tok[:]...),
	} {
		_, _, err := DecodeAuth(p)
		assert.ErrorIs(t, err, ErrMalformed, "AUTH %s", name)
	}
	_, err := DecodeAuthOK(tok[:SecretLen-1])
	assert.ErrorIs(t, err, ErrMalformed, "short AUTHOK")
	lane := AppendLaneAuth(nil, 3, 4, tok)[HeaderLen:]
	for name, p := range map[string][]byte{
		"empty": nil, "no lane": {3}, "short secret": lane[:len(lane)-1], "long secret": append(append([]byte{}, lane...), 9),
	} {
		_, _, _, err := DecodeLaneAuth(p)
		assert.ErrorIs(t, err, ErrMalformed, "LANEAUTH %s", name)
	}
}

// FuzzDecodeAuth feeds hostile bytes to the decoders a peer reaches before
// it has authenticated: they never panic, and what they accept re-encodes
// to the same bytes.
func FuzzDecodeAuth(f *testing.F) {
	var tok [SecretLen]byte
	f.Add(AppendAuth(nil, 1, tok)[HeaderLen:])
	f.Add(AppendLaneAuth(nil, 1, 2, tok)[HeaderLen:])
	f.Add(tok[:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		if r, tk, err := DecodeAuth(p); err == nil {
			assert.Equal(t, p, AppendAuth(nil, r, tk)[HeaderLen:])
		}
		if sec, err := DecodeAuthOK(p); err == nil {
			assert.Equal(t, p, AppendAuthOK(nil, sec)[HeaderLen:])
		}
		if r, l, sec, err := DecodeLaneAuth(p); err == nil {
			assert.Equal(t, p, AppendLaneAuth(nil, r, l, sec)[HeaderLen:])
		}
	})
}
