package flame

import (
	"bytes"
	"context"
	"encoding/binary"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/flame/internal/wire"
)

// tagged is a type written for encoding/json.
type tagged struct {
	Name    string            `json:"name"`
	Skip    string            `json:"-"`
	Renamed int               `json:"n,omitempty" cbor:"count"`
	When    time.Time         `json:"when"`
	Any     any               `json:"any"`
	Attrs   map[string]string `json:"attrs"`
	hidden  int
}

// CBOR names fields as their json tags do (a cbor tag wins), keeps time's
// nanoseconds, decodes maps under interfaces as map[string]any, and leaves
// unexported and "-" fields behind.
func TestCBORKeepsJSONFieldNamesAndTime(t *testing.T) {
	when := time.Date(2026, 12, 4, 23, 0, 0, 123456789, time.UTC)
	in := tagged{Name: "x", Skip: "no", Renamed: 3, When: when, Any: map[string]any{"k": "v"}, Attrs: map[string]string{"a": "b"}, hidden: 7}
	b, err := CBOR.Marshal(in)
	require.NoError(t, err)
	var fields map[string]any
	require.NoError(t, CBOR.Unmarshal(b, &fields))
	assert.ElementsMatch(t, []string{"name", "count", "when", "any", "attrs"}, keys(fields))
	var out tagged
	require.NoError(t, CBOR.Unmarshal(b, &out))
	assert.True(t, when.Equal(out.When), "time %v came back as %v", when, out.When)
	assert.Equal(t, map[string]any{"k": "v"}, out.Any)
	assert.Equal(t, "x", out.Name)
	assert.Equal(t, 3, out.Renamed)
	assert.Empty(t, out.Skip)
	assert.Zero(t, out.hidden)
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// Hostile input to the decoder fails, cheaply: deep nesting, lengths the
// data does not hold, element counts past the limit, wrong types.
func TestCBORRefusesHostileInput(t *testing.T) {
	deep := append(bytes.Repeat([]byte{0x81}, 65), 0x00) // 65 nested one-element arrays
	huge := append([]byte{0x5b}, binary.BigEndian.AppendUint64(nil, 1<<62)...)
	huge = append(huge, 1, 2, 3) // a byte string that claims 2^62 bytes
	manyElems := append([]byte{0x9a}, binary.BigEndian.AppendUint32(nil, 1<<31)...)
	for name, tc := range map[string]struct {
		data []byte
		into func() any
	}{
		"deep nesting":              {deep, func() any { return new(any) }},
		"a length the data lacks":   {huge, func() any { return new([]byte) }},
		"a length into an any":      {huge, func() any { return new(any) }},
		"too many elements claimed": {manyElems, func() any { return new([]int) }},
		"wrong type":                {[]byte{0x63, 'a', 'b', 'c'}, func() any { return new(int) }},
		"truncated map":             {[]byte{0xa1, 0x64, 'N'}, func() any { return new(tagged) }},
		"duplicate keys":            {[]byte{0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02}, func() any { return new(map[string]int) }},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := CBOR.Unmarshal(tc.data, tc.into())
		runtime.ReadMemStats(&after)
		assert.Error(t, err, name)
		assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "%s: allocated %d bytes", name, after.TotalAlloc-before.TotalAlloc)
		// decodeOwned's in-place path refuses the same.
		assert.Error(t, decodeOwned(CBOR, tc.data, tc.into()), name)
	}
}

// A top-level []byte decoded from data the caller owns takes its memory;
// anything else is an ordinary decode.
func TestDecodeOwnedTakesTheBytesInPlace(t *testing.T) {
	for _, n := range []int{0, 5, 23, 24, 255, 256, 65535, 65536, 1 << 20} {
		payload := bytes.Repeat([]byte{7}, n)
		enc, err := CBOR.Marshal(payload)
		require.NoError(t, err)
		var out []byte
		require.NoError(t, decodeOwned(CBOR, enc, &out))
		require.True(t, bytes.Equal(payload, out), "%d bytes", n)
		if n > 0 {
			assert.Same(t, &enc[len(enc)-n], &out[0], "%d bytes: copied", n)
		}
		assert.Equal(t, len(out), cap(out), "appending to it must not write past it")
	}
	// Indefinite length, trailing bytes, or another type: decoded as usual.
	var out []byte
	require.NoError(t, decodeOwned(CBOR, []byte{0x5f, 0x41, 'a', 0x41, 'b', 0xff}, &out))
	assert.Equal(t, []byte("ab"), out)
	assert.Error(t, decodeOwned(CBOR, []byte{0x41, 'a', 'b'}, &out), "trailing data")
	var s string
	require.NoError(t, decodeOwned(CBOR, []byte{0x61, 'z'}, &s))
	assert.Equal(t, "z", s)
	// JSON copies.
	require.NoError(t, decodeOwned(JSON, []byte(`"YWI="`), &out))
	assert.Equal(t, []byte("ab"), out)
}

// A pooled encoding gives its buffer back for the next one; the bytes
// are right either way.
func TestEncodePooledReusesItsBuffer(t *testing.T) {
	payload := bytes.Repeat([]byte{1}, 100_000)
	a, release, err := encode(CBOR, payload, true)
	require.NoError(t, err)
	require.NotNil(t, release)
	want, err := CBOR.Marshal(payload)
	require.NoError(t, err)
	require.True(t, bytes.Equal(want, a))
	release()
	_, release2, err := encode(JSON, payload, true)
	require.NoError(t, err)
	assert.Nil(t, release2, "only CBOR pools")
	_, release3, err := encode(CBOR, payload, false)
	require.NoError(t, err)
	assert.Nil(t, release3)
}

// FuzzDecodeArgs feeds arbitrary bytes to the decoder as a runner would
// (a frame it owns): no panic, and memory bounded by a small multiple of
// the input.
func FuzzDecodeArgs(f *testing.F) {
	for _, v := range []any{tagged{Name: "seed", Attrs: map[string]string{"a": "b"}}, []byte("bytes"), map[string]any{"k": []any{1, "x", 2.5}}, 42} {
		b, err := CBOR.Marshal(v)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte{0x9f, 0x9f, 0x9f, 0xff, 0xff, 0xff})
	f.Add(append([]byte{0x5b}, binary.BigEndian.AppendUint64(nil, 1<<40)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var a any
		_ = decodeOwned(CBOR, append([]byte(nil), data...), &a)
		var s tagged
		_ = decodeOwned(CBOR, append([]byte(nil), data...), &s)
		var b []byte
		_ = decodeOwned(CBOR, append([]byte(nil), data...), &b)
		runtime.ReadMemStats(&after)
		if grew := after.TotalAlloc - before.TotalAlloc; grew > uint64(200*len(data)+1<<20) {
			t.Fatalf("decoding %d bytes allocated %d", len(data), grew)
		}
	})
}

// kept holds what keepFn was given, past its call.
var kept = make(chan []byte, 4)

var keepFn = Register("test.codec.keep", func(_ context.Context, b []byte) (int, error) {
	kept <- b
	return len(b), nil
})

// A function may keep its []byte argument: the buffers behind later calls
// never write over it, on LocalBackend (where the argument is the
// caller's encoding) as anywhere.
func TestAFunctionMayKeepItsBytes(t *testing.T) {
	p, err := NewPool(Config{Max: 1})
	require.NoError(t, err)
	defer p.Close(context.Background())
	first := bytes.Repeat([]byte{1}, 50_000)
	_, err = keepFn.Call(context.Background(), p, first)
	require.NoError(t, err)
	got := <-kept
	for range 3 {
		_, err = keepFn.Call(context.Background(), p, bytes.Repeat([]byte{2}, 50_000))
		require.NoError(t, err)
		<-kept
	}
	assert.True(t, bytes.Equal(first, got), "a later call wrote over the bytes an earlier one kept")
}

// longestIDFn has an ID of exactly the longest length the wire carries.
// Registered at init, as every function must be, so that runner processes
// of this test binary register it too.
var longestIDFn = Register(strings.Repeat("x", wire.MaxIDLen), func(context.Context, int) (int, error) { return 0, nil })

// An ID of the longest length the wire carries is accepted; one byte more
// is refused.
func TestRegisterTakesIDsUpToTheWiresLimit(t *testing.T) {
	assert.Len(t, longestIDFn.ID(), wire.MaxIDLen)
	noop := func(context.Context, int) (int, error) { return 0, nil }
	assert.Panics(t, func() { Register(longestIDFn.ID()+"y", noop) })
}

// A byte string whose length header is cut short is not taken for one:
// it is left to the decoder, which refuses it.
func TestTruncatedByteStringHeaderIsAnError(t *testing.T) {
	for _, data := range [][]byte{{0x58}, {0x59, 0x01}, {0x5a, 0, 0, 1}, {0x5b, 0, 0, 0, 0, 0, 0, 1}} {
		var b []byte
		assert.Error(t, decodeOwned(CBOR, data, &b), "% x", data)
	}
}

// A call run in this process gives its arguments' buffer back to the pool
// of encode buffers once the function has returned, unless the function
// may keep the arguments' memory (a CBOR []byte): then the buffer is the
// function's for good.
func TestALocalCallGivesItsArgumentsBufferBackUnlessKept(t *testing.T) {
	p := mustPool(t, Config{Max: 1})
	for _, c := range []struct {
		name string
		inv  func() (*invocation, error)
		want int
	}{
		{"int arguments", func() (*invocation, error) { return overrunFn.invocation(7, KindCall) }, 1},
		{"kept bytes", func() (*invocation, error) { return keepFn.invocation([]byte("keep me"), KindCall) }, 0},
	} {
		inv, err := c.inv()
		require.NoError(t, err)
		require.NotNil(t, inv.release, c.name)
		given := 0
		inv.release = func() { given++ }
		require.NoError(t, p.call(context.Background(), job{inv: inv}, nil), c.name)
		if c.want == 0 {
			<-kept
		}
		assert.Equal(t, c.want, given, c.name)
	}
}

// Encode buffers up to maxPooledBuffer go back to the pool for reuse; one
// that a huge payload grew past it is dropped.
func TestOnlyBuffersUpToTheLimitAreKeptForReuse(t *testing.T) {
	assert.True(t, keepForReuse(bytes.NewBuffer(make([]byte, 0, 4<<10))))
	assert.True(t, keepForReuse(bytes.NewBuffer(make([]byte, 0, maxPooledBuffer))))
	assert.False(t, keepForReuse(bytes.NewBuffer(make([]byte, 0, maxPooledBuffer+1))))
}

// A byte string decodes in place whichever length header it comes with,
// the 8-byte one included (other encoders may use a longer header than
// they need).
func TestByteStringDecodesInPlaceWithEveryHeader(t *testing.T) {
	for _, head := range [][]byte{{0x43}, {0x58, 3}, {0x59, 0, 3}, {0x5a, 0, 0, 0, 3}, {0x5b, 0, 0, 0, 0, 0, 0, 0, 3}} {
		data := append(append([]byte(nil), head...), 'a', 'b', 'c')
		var b []byte
		require.NoError(t, decodeOwned(CBOR, data, &b), "% x", head)
		assert.Equal(t, "abc", string(b))
		assert.Same(t, &data[len(head)], &b[0], "% x: copied", head)
	}
}
