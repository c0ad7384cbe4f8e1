package flame

import (
	"bytes"
	"encoding/json"
	"reflect"
	"sync"

	"github.com/fxamacker/cbor/v2"
)

// Codec encodes a registered function's arguments and result for the trip
// to a runner and back. Implementations must be safe for concurrent use.
type Codec interface {
	// Name identifies the encoding. It is part of the registry's
	// fingerprint, which parent and runner compare at the handshake: a
	// runner that would decode with another codec is version skew
	// (ErrVersionSkew), never garbage.
	Name() string
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into v, a pointer. data may come from another
	// process or host: a codec must bound what hostile input can make it
	// allocate and how deep it recurses.
	Unmarshal(data []byte, v any) error
}

// The codecs that come with the package.
var (
	// CBOR (RFC 8949) is the default: binary, so []byte and strings travel
	// as they are. Struct fields are named by their cbor tag or, without
	// one, their json tag, so types written for encoding/json keep their
	// field names (a type's MarshalJSON is not used). time.Time keeps its
	// nanoseconds; a map decoded into an interface is a map[string]any,
	// as with JSON. Decoding is limited for untrusted input: 64 levels of
	// nesting and at most 16 Mi elements per array or map (an element
	// takes at least a byte of the message, which is itself limited), and
	// a length longer than the data fails before anything is allocated.
	CBOR Codec = cborCodec{}
	// JSON is encoding/json, for readable payloads and for types whose
	// MarshalJSON and UnmarshalJSON must be used; []byte travels as
	// base64, several times slower than CBOR.
	JSON Codec = jsonCodec{}
)

type cborCodec struct{}

var (
	cborEncOpts = cbor.EncOptions{
		Time: cbor.TimeRFC3339Nano, // JSON's precision; the default (Unix seconds) would drop it
	}
	cborEnc    = must(cborEncOpts.EncMode())
	cborEncBuf = must(cborEncOpts.UserBufferEncMode())
	cborDec    = must(cbor.DecOptions{
		MaxNestedLevels:  64,
		MaxArrayElements: 16 << 20,
		MaxMapPairs:      16 << 20,
		DefaultMapType:   reflect.TypeFor[map[string]any](),
		DupMapKey:        cbor.DupMapKeyEnforcedAPF, // one key, one value: no smuggling
	}.DecMode())
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func (cborCodec) Name() string                       { return "cbor" }
func (cborCodec) Marshal(v any) ([]byte, error)      { return cborEnc.Marshal(v) }
func (cborCodec) Unmarshal(data []byte, v any) error { return cborDec.Unmarshal(data, v) }

// encodeBufs holds encoding buffers for payloads that are sent and then
// dropped (a call's arguments on their way to another process, a runner's
// result): a large payload costs a copy, not an allocation, per call.
var encodeBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuffer is the largest buffer kept for reuse.
const maxPooledBuffer = 16 << 20

// encode encodes v with c. With pooled, the encoding may be in a buffer
// from encodeBufs, and release (not nil then) gives it back: call it once
// the bytes are sent and no longer referenced.
func encode(c Codec, v any, pooled bool) (data []byte, release func(), err error) {
	if !pooled || c != CBOR {
		data, err = c.Marshal(v)
		return data, nil, err
	}
	buf := encodeBufs.Get().(*bytes.Buffer)
	buf.Reset()
	switch b := v.(type) { // a payload of bytes: room for it at once, not by doubling
	case []byte:
		buf.Grow(len(b) + 9)
	case string:
		buf.Grow(len(b) + 9)
	}
	if err := cborEncBuf.MarshalToBuffer(v, buf); err != nil {
		encodeBufs.Put(buf)
		return nil, nil, err
	}
	return buf.Bytes(), func() {
		if keepForReuse(buf) {
			encodeBufs.Put(buf)
		}
	}, nil
}

// keepForReuse reports whether an encode buffer goes back to the pool once
// released: one that grew past maxPooledBuffer is dropped, so that one
// huge payload does not keep its memory for the life of the program.
func keepForReuse(buf *bytes.Buffer) bool { return buf.Cap() <= maxPooledBuffer }

// keepsBytes reports whether decodeOwned may make a value of type T keep
// the memory of the data it is decoded from.
func keepsBytes[T any](c Codec) bool {
	return c == CBOR && reflect.TypeFor[T]() == reflect.TypeFor[[]byte]()
}

// decodeOwned decodes data, which the caller hands over (a frame just
// read, or an encoding nobody else holds), into v. With CBOR a top-level
// []byte takes data's memory rather than a copy of it: a payload of bytes
// is decoded without being copied.
func decodeOwned(c Codec, data []byte, v any) error {
	if bp, ok := v.(*[]byte); ok && c == CBOR {
		if b, ok := cborByteString(data); ok {
			*bp = b
			return nil
		}
	}
	return c.Unmarshal(data, v)
}

// cborByteString returns the content of data if data is exactly one
// definite-length CBOR byte string.
func cborByteString(data []byte) ([]byte, bool) {
	if len(data) == 0 || data[0]>>5 != 2 {
		return nil, false
	}
	info := data[0] & 0x1f
	var n uint64
	h := 1
	if info > 27 { // indefinite length, or reserved
		return nil, false
	}
	if info < 24 {
		n = uint64(info)
	} else {
		size := 1 << (info - 24) // 1, 2, 4 or 8 bytes of length
		if len(data) < 1+size {
			return nil, false
		}
		for _, b := range data[1 : 1+size] {
			n = n<<8 | uint64(b)
		}
		h += size
	}
	if n != uint64(len(data)-h) {
		return nil, false
	}
	return data[h:len(data):len(data)], true
}

type jsonCodec struct{}

func (jsonCodec) Name() string                       { return "json" }
func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// RegisterOption configures a function at Register.
type RegisterOption func(*registerOptions)

type registerOptions struct {
	codec Codec
}

// WithCodec encodes the function's arguments and result with c instead
// of CBOR. Parent and runner register the same functions, so they agree.
func WithCodec(c Codec) RegisterOption {
	return func(o *registerOptions) { o.codec = c }
}
