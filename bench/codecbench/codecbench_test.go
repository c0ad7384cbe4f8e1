// Package codecbench measures the encodings considered for registered
// functions' payloads: a round trip (encode, then decode into a fresh
// value) of a 1 MiB []byte and of a small five-field struct, through
// encoding/json, encoding/gob, CBOR as goflame configures it (flame.CBOR),
// CBOR with goflame's decode of a top-level []byte in place
// (impl=cbor-owned, what a runner does with a frame it has read: the
// encode's copy only), and msgpack.
//
//	go test -run '^$' -bench . -benchmem ./bench/codecbench
package codecbench

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/goflame/goflame/flame"
)

// small is the small payload: five fields of the usual kinds.
type small struct {
	ID    int64    `json:"id"`
	Name  string   `json:"name"`
	Score float64  `json:"score"`
	Tags  []string `json:"tags"`
	OK    bool     `json:"ok"`
}

var smallValue = small{ID: 42, Name: "thumbnail-0042.png", Score: 0.875, Tags: []string{"a", "bb"}, OK: true}

type impl struct {
	name string
	rt   func(v, out any) error // encode v, decode into out
}

var impls = []impl{
	{"json", func(v, out any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return json.Unmarshal(b, out)
	}},
	{"gob", func(v, out any) error {
		var buf bytes.Buffer
		if err := gob.NewEncoder(&buf).Encode(v); err != nil {
			return err
		}
		return gob.NewDecoder(&buf).Decode(out)
	}},
	{"cbor", func(v, out any) error {
		b, err := flame.CBOR.Marshal(v)
		if err != nil {
			return err
		}
		return flame.CBOR.Unmarshal(b, out)
	}},
	{"msgpack", func(v, out any) error {
		b, err := msgpack.Marshal(v)
		if err != nil {
			return err
		}
		return msgpack.Unmarshal(b, out)
	}},
}

func BenchmarkRoundTrip(b *testing.B) {
	payload := bytes.Repeat([]byte{0xab}, 1<<20)
	for _, im := range impls {
		b.Run("payload=1MiB/impl="+im.name, func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				var out []byte
				if err := im.rt(payload, &out); err != nil || len(out) != len(payload) {
					b.Fatal(err, len(out))
				}
			}
		})
	}
	b.Run("payload=1MiB/impl=cbor-owned", func(b *testing.B) {
		b.SetBytes(int64(len(payload)))
		for b.Loop() {
			enc, err := flame.CBOR.Marshal(payload)
			if err != nil {
				b.Fatal(err)
			}
			if out := inPlace(enc); len(out) != len(payload) {
				b.Fatal(len(out))
			}
		}
	})
	for _, im := range impls {
		b.Run("payload=struct/impl="+im.name, func(b *testing.B) {
			for b.Loop() {
				var out small
				if err := im.rt(smallValue, &out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Every codec measured round-trips both payloads intact.
func TestImplsRoundTrip(t *testing.T) {
	for _, im := range impls {
		var s small
		require.NoError(t, im.rt(smallValue, &s), im.name)
		require.Equal(t, smallValue, s, im.name)
		var out []byte
		require.NoError(t, im.rt([]byte("bytes"), &out), im.name)
		require.Equal(t, []byte("bytes"), out, im.name)
	}
}

// inPlace is how goflame decodes a top-level []byte from a frame it owns:
// the bytes after the CBOR byte-string header, not a copy (this sketch
// knows the header is 1+4 bytes for 1 MiB).
func inPlace(enc []byte) []byte {
	if enc[0] != 0x5a { // byte string, 4-byte length
		return nil
	}
	return enc[5:]
}
