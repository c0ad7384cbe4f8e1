// Package wire is the frame codec between a goflame parent and its runner
// processes.
//
// A frame is
//
//	uint32 length (big endian) | uint8 type | payload (length bytes)
//
// where length counts the payload only and is capped by the reader. The
// decoders never panic and never allocate more than the cap, whatever
// bytes they are fed: a frame that claims more than the cap is refused
// before anything is allocated, and a large payload is read in growing
// chunks, so a peer that claims a large frame and then stalls costs at
// most the bytes it actually sent (plus one chunk).
//
// A parent and a runner share one control connection and any number of
// lanes, one per call in flight. The control connection carries HELLO,
// READY, PING, LANE, CANCEL and SHUTDOWN; a lane carries CALL and its
// reply (RESULT or ERROR), strictly in turn.
//
// Messages (the payload of each frame type):
//
//	HELLO    runner -> parent   JSON Hello: protocol version, build id, registry hash, pid
//	READY    runner -> parent   empty: the runner serves calls
//	CALL     parent -> runner   kind u8 | timeout uvarint (ns, 0: none) | uvarint len | fn id | args
//	CANCEL   parent -> runner   lane uvarint | call uvarint: cancel that lane's call number call (1: its first)
//	RESULT   runner -> parent   the encoded result
//	ERROR    either way         code u8 | uvarint len | message | uvarint n | n × (uvarint len | registered code) | stack
//	SHUTDOWN parent -> runner   empty: finish in-flight calls, then exit
//	PING     either way         empty: I am alive (sent every keepalive period)
//	LANE     parent -> runner   lane uvarint; over a Unix socket the frame carries the lane's socket (SCM_RIGHTS)
//
// A runner on another machine dials its parent (TLS) and authenticates
// before the session begins, on the control connection and on each lane it
// dials back:
//
//	AUTH     runner -> parent   runner uvarint | token (32 bytes): the launch's single-use token
//	AUTHOK   parent -> runner   lane secret (32 bytes), for the lanes this runner dials
//	LANEAUTH runner -> parent   runner uvarint | lane uvarint | lane secret (32 bytes)
//
// Deadlines travel as relative durations, never as wall-clock times.
package wire

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Type is a frame type.
type Type uint8

// Frame types.
const (
	Hello Type = 1 + iota
	Ready
	Call
	Cancel
	Result
	Error
	Shutdown
	Ping
	Lane
	Auth
	AuthOK
	LaneAuth
	maxType = LaneAuth
)

var typeNames = [...]string{"", "HELLO", "READY", "CALL", "CANCEL", "RESULT", "ERROR", "SHUTDOWN", "PING", "LANE", "AUTH", "AUTHOK", "LANEAUTH"}

func (t Type) String() string {
	if t >= 1 && t <= maxType {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

const (
	// HeaderLen is the size of a frame header.
	HeaderLen = 5
	// DefaultMaxPayload is the default payload cap: 16 MiB.
	DefaultMaxPayload = 16 << 20
	// chunk is how much of a large payload is read before the buffer grows.
	chunk = 64 << 10
	// MaxIDLen bounds a function id in a CALL.
	MaxIDLen = 1024
	// ProtocolVersion is sent in HELLO; parent and runner must agree.
	ProtocolVersion = 3
	// MaxErrorCodeLen bounds a registered error code in an ERROR.
	MaxErrorCodeLen = 128
	// MaxErrorCodes bounds how many registered error codes an ERROR names.
	MaxErrorCodes = 64
)

// Errors returned by the decoders.
var (
	// ErrTooLarge: a frame's payload exceeds the cap.
	ErrTooLarge = errors.New("wire: frame exceeds the size limit")
	// ErrMalformed: a frame or message is not well formed.
	ErrMalformed = errors.New("wire: malformed message")
)

// AppendHeader appends a frame header for a payload of n bytes.
func AppendHeader(dst []byte, t Type, n int) []byte {
	return append(binary.BigEndian.AppendUint32(dst, uint32(n)), byte(t))
}

// AppendFrame appends a whole frame.
func AppendFrame(dst []byte, t Type, payload []byte) []byte {
	return append(AppendHeader(dst, t, len(payload)), payload...)
}

// ParseHeader decodes a frame header and checks it against max: the type
// must be known and the length at most max.
func ParseHeader(h [HeaderLen]byte, max int) (Type, int, error) {
	n := binary.BigEndian.Uint32(h[:4])
	t := Type(h[4])
	if t < 1 || t > maxType {
		return 0, 0, fmt.Errorf("%w: unknown frame type %d", ErrMalformed, h[4])
	}
	if uint64(n) > uint64(max) {
		return 0, 0, fmt.Errorf("%w: %s frame of %d bytes, limit %d", ErrTooLarge, t, n, max)
	}
	return t, int(n), nil
}

// ReadFrame reads one frame from r. The payload is at most max bytes
// (larger frames fail with ErrTooLarge before anything is allocated) and is
// owned by the caller. At a clean end of input it returns io.EOF; a frame
// cut short returns io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, max int) (Type, []byte, error) {
	var h [HeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	t, n, err := ParseHeader(h, max)
	if err != nil {
		return 0, nil, err
	}
	p, err := readPayload(r, n)
	if err != nil {
		return 0, nil, err
	}
	return t, p, nil
}

// readPayload reads exactly n bytes. A payload above one chunk is read
// into a buffer of n bytes only once its first chunk has arrived, so a
// peer that claims a large frame and stalls has made us allocate at most a
// chunk; one that sends a chunk may make us allocate n (at most the cap,
// which bounds what it could send anyway). The payload is read straight
// into its buffer: no copy beyond the first chunk.
func readPayload(r io.Reader, n int) ([]byte, error) {
	first := min(n, chunk)
	p := make([]byte, first)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, unexpected(err)
	}
	if n == first {
		return p, nil
	}
	whole := make([]byte, n)
	copy(whole, p)
	if _, err := io.ReadFull(r, whole[first:]); err != nil {
		return nil, unexpected(err)
	}
	return whole, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Kind says how the parent placed a call (informational on the runner).
type Kind uint8

// Call kinds.
const (
	KindCall Kind = iota
	KindCast
	KindPlace
	maxKind = KindPlace
)

// CallMsg is the payload of a CALL frame.
type CallMsg struct {
	Kind    Kind
	Timeout time.Duration // 0: no limit; the runner starts it when the CALL arrives
	ID      string        // registered function id
	Args    []byte        // encoded arguments
}

// AppendCall appends a whole CALL frame.
func AppendCall(dst []byte, m CallMsg) []byte {
	return append(AppendCallHead(dst, m), m.Args...)
}

// AppendCallHead appends a CALL frame up to its arguments, which follow
// it on the wire: a large payload can go out as it is (writev), not
// copied into the frame.
func AppendCallHead(dst []byte, m CallMsg) []byte {
	dst = AppendHeader(dst, Call, CallPayloadLen(m))
	dst = append(dst, byte(m.Kind))
	dst = binary.AppendUvarint(dst, uint64(m.Timeout))
	dst = binary.AppendUvarint(dst, uint64(len(m.ID)))
	return append(dst, m.ID...)
}

// WriteParts writes a frame made of head (its header and leading fields)
// and body to w. A large body goes out in the same system call (writev)
// without being copied into the frame; a small one is appended to head,
// one write either way. head's spare capacity may be used.
func WriteParts(w io.Writer, head, body []byte) error {
	if len(body) < copyBelow {
		_, err := w.Write(append(head, body...))
		return err
	}
	bufs := net.Buffers{head, body}
	_, err := bufs.WriteTo(w)
	return err
}

// copyBelow is the body size under which copying it into the frame costs
// less than a second buffer in the write.
const copyBelow = 16 << 10

// CallPayloadLen is the payload size of a CALL frame for m.
func CallPayloadLen(m CallMsg) int {
	return 1 + uvarintLen(uint64(m.Timeout)) + uvarintLen(uint64(len(m.ID))) + len(m.ID) + len(m.Args)
}

// DecodeCall decodes a CALL payload. Args aliases p.
func DecodeCall(p []byte) (CallMsg, error) {
	var m CallMsg
	if len(p) < 1 {
		return m, fmt.Errorf("%w: empty CALL", ErrMalformed)
	}
	m.Kind = Kind(p[0])
	if m.Kind > maxKind {
		return m, fmt.Errorf("%w: CALL kind %d", ErrMalformed, p[0])
	}
	p = p[1:]
	t, k := uvarint(p)
	if k <= 0 || t > uint64(1<<63-1) {
		return m, fmt.Errorf("%w: CALL timeout", ErrMalformed)
	}
	m.Timeout = time.Duration(t)
	p = p[k:]
	id, rest, err := lengthPrefixed(p, MaxIDLen)
	if err != nil {
		return m, fmt.Errorf("%w: CALL function id", err)
	}
	m.ID, m.Args = string(id), rest
	return m, nil
}

// AppendCancel appends a whole CANCEL frame for call number call (counted
// from 1) on lane.
func AppendCancel(dst []byte, lane, call uint64) []byte {
	dst = AppendHeader(dst, Cancel, uvarintLen(lane)+uvarintLen(call))
	dst = binary.AppendUvarint(dst, lane)
	return binary.AppendUvarint(dst, call)
}

// DecodeCancel decodes a CANCEL payload.
func DecodeCancel(p []byte) (lane, call uint64, err error) {
	l, k := uvarint(p)
	if k <= 0 {
		return 0, 0, fmt.Errorf("%w: CANCEL lane", ErrMalformed)
	}
	c, k2 := uvarint(p[k:])
	if k2 <= 0 || k+k2 != len(p) {
		return 0, 0, fmt.Errorf("%w: CANCEL call", ErrMalformed)
	}
	return l, c, nil
}

// AppendLane appends a whole LANE frame (the socket travels beside it).
func AppendLane(dst []byte, lane uint64) []byte {
	dst = AppendHeader(dst, Lane, uvarintLen(lane))
	return binary.AppendUvarint(dst, lane)
}

// DecodeLane decodes a LANE payload.
func DecodeLane(p []byte) (uint64, error) {
	l, k := uvarint(p)
	if k <= 0 || k != len(p) {
		return 0, fmt.Errorf("%w: LANE", ErrMalformed)
	}
	return l, nil
}

// Code classifies an ERROR.
type Code uint8

// Error codes.
const (
	CodeHandler       Code = 1 + iota // the function returned an error
	CodeCanceled                      // ... that matches context.Canceled
	CodeDeadline                      // ... that matches context.DeadlineExceeded
	CodePanic                         // the function panicked; Stack is set
	CodeNotRegistered                 // no function under that id
	CodeTooLarge                      // a payload exceeds the size limit
	CodeDecode                        // arguments or result do not decode
	CodeVersionSkew                   // parent and runner are different builds
	CodeProtocol                      // a frame out of order
	maxCode           = CodeProtocol
)

var codeNames = [...]string{"", "handler", "canceled", "deadline", "panic", "not_registered", "too_large", "decode", "version_skew", "protocol"}

func (c Code) String() string {
	if c >= 1 && c <= maxCode {
		return codeNames[c]
	}
	return fmt.Sprintf("Code(%d)", uint8(c))
}

// ErrorMsg is the payload of an ERROR frame.
type ErrorMsg struct {
	Code    Code
	Message string
	// Registered are the codes of the registered errors found in the
	// handler's error chain (each 1 to MaxErrorCodeLen bytes, at most
	// MaxErrorCodes of them).
	Registered []string
	Stack      []byte // CodePanic: the handler's stack
}

// ErrorPayloadLen is the payload size of an ERROR frame for m.
func ErrorPayloadLen(m ErrorMsg) int {
	n := 1 + uvarintLen(uint64(len(m.Message))) + len(m.Message) + uvarintLen(uint64(len(m.Registered))) + len(m.Stack)
	for _, c := range m.Registered {
		n += uvarintLen(uint64(len(c))) + len(c)
	}
	return n
}

// AppendError appends a whole ERROR frame.
func AppendError(dst []byte, m ErrorMsg) []byte {
	dst = AppendHeader(dst, Error, ErrorPayloadLen(m))
	dst = append(dst, byte(m.Code))
	dst = binary.AppendUvarint(dst, uint64(len(m.Message)))
	dst = append(dst, m.Message...)
	dst = binary.AppendUvarint(dst, uint64(len(m.Registered)))
	for _, c := range m.Registered {
		dst = binary.AppendUvarint(dst, uint64(len(c)))
		dst = append(dst, c...)
	}
	return append(dst, m.Stack...)
}

// DecodeError decodes an ERROR payload. Stack aliases p.
func DecodeError(p []byte) (ErrorMsg, error) {
	var m ErrorMsg
	if len(p) < 1 {
		return m, fmt.Errorf("%w: empty ERROR", ErrMalformed)
	}
	m.Code = Code(p[0])
	if m.Code < 1 || m.Code > maxCode {
		return m, fmt.Errorf("%w: ERROR code %d", ErrMalformed, p[0])
	}
	msg, rest, err := lengthPrefixed(p[1:], len(p))
	if err != nil {
		return m, fmt.Errorf("%w: ERROR message", err)
	}
	m.Message = string(msg)
	n, k := uvarint(rest)
	if k <= 0 || n > MaxErrorCodes {
		return m, fmt.Errorf("%w: ERROR registered codes", ErrMalformed)
	}
	rest = rest[k:]
	for range n {
		var c []byte
		if c, rest, err = lengthPrefixed(rest, MaxErrorCodeLen); err != nil || len(c) == 0 {
			return m, fmt.Errorf("%w: ERROR registered code", ErrMalformed)
		}
		m.Registered = append(m.Registered, string(c))
	}
	if len(rest) > 0 {
		m.Stack = rest
	}
	return m, nil
}

// SecretLen is the length of a launch token and of a lane secret.
const SecretLen = 32

// AuthMaxPayload bounds the payload of the frames read before a peer has
// authenticated.
const AuthMaxPayload = 64

// AppendAuth appends a whole AUTH frame.
func AppendAuth(dst []byte, runner uint64, token [SecretLen]byte) []byte {
	dst = AppendHeader(dst, Auth, uvarintLen(runner)+SecretLen)
	dst = binary.AppendUvarint(dst, runner)
	return append(dst, token[:]...)
}

// DecodeAuth decodes an AUTH payload.
func DecodeAuth(p []byte) (runner uint64, token [SecretLen]byte, err error) {
	r, k := uvarint(p)
	if k <= 0 || len(p)-k != SecretLen {
		return 0, token, fmt.Errorf("%w: AUTH", ErrMalformed)
	}
	copy(token[:], p[k:])
	return r, token, nil
}

// AppendAuthOK appends a whole AUTHOK frame.
func AppendAuthOK(dst []byte, laneSecret [SecretLen]byte) []byte {
	return AppendFrame(dst, AuthOK, laneSecret[:])
}

// DecodeAuthOK decodes an AUTHOK payload.
func DecodeAuthOK(p []byte) (laneSecret [SecretLen]byte, err error) {
	if len(p) != SecretLen {
		return laneSecret, fmt.Errorf("%w: AUTHOK", ErrMalformed)
	}
	copy(laneSecret[:], p)
	return laneSecret, nil
}

// AppendLaneAuth appends a whole LANEAUTH frame.
func AppendLaneAuth(dst []byte, runner, lane uint64, secret [SecretLen]byte) []byte {
	dst = AppendHeader(dst, LaneAuth, uvarintLen(runner)+uvarintLen(lane)+SecretLen)
	dst = binary.AppendUvarint(dst, runner)
	dst = binary.AppendUvarint(dst, lane)
	return append(dst, secret[:]...)
}

// DecodeLaneAuth decodes a LANEAUTH payload.
func DecodeLaneAuth(p []byte) (runner, lane uint64, secret [SecretLen]byte, err error) {
	r, k := uvarint(p)
	if k <= 0 {
		return 0, 0, secret, fmt.Errorf("%w: LANEAUTH runner", ErrMalformed)
	}
	l, k2 := uvarint(p[k:])
	if k2 <= 0 || len(p)-k-k2 != SecretLen {
		return 0, 0, secret, fmt.Errorf("%w: LANEAUTH", ErrMalformed)
	}
	copy(secret[:], p[k+k2:])
	return r, l, secret, nil
}

// HelloMsg is the payload of a HELLO frame (JSON: it is sent once).
type HelloMsg struct {
	Proto    int    `json:"proto"`
	Build    string `json:"build"`
	Registry string `json:"registry"`
	PID      int    `json:"pid"`
}

// AppendHello appends a whole HELLO frame.
func AppendHello(dst []byte, m HelloMsg) []byte {
	b, _ := json.Marshal(m) // cannot fail: plain fields
	return AppendFrame(dst, Hello, b)
}

// DecodeHello decodes a HELLO payload.
func DecodeHello(p []byte) (HelloMsg, error) {
	var m HelloMsg
	if err := json.Unmarshal(p, &m); err != nil {
		return HelloMsg{}, fmt.Errorf("%w: HELLO: %v", ErrMalformed, err)
	}
	return m, nil
}

// lengthPrefixed splits p into a uvarint-prefixed field of at most max
// bytes and the rest.
func lengthPrefixed(p []byte, max int) (field, rest []byte, err error) {
	n, k := uvarint(p)
	if k <= 0 {
		return nil, nil, ErrMalformed
	}
	p = p[k:]
	if n > uint64(len(p)) || n > uint64(max) {
		return nil, nil, ErrMalformed
	}
	return p[:n], p[n:], nil
}

// uvarint is binary.Uvarint that also refuses a non-minimal encoding, so
// that every message has exactly one encoding.
func uvarint(p []byte) (uint64, int) {
	x, k := binary.Uvarint(p)
	if k > 0 && k != uvarintLen(x) {
		return 0, -k
	}
	return x, k
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}
