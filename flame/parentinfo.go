package flame

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/goflame/goflame/flame/internal/wire"
)

// parentInfo is what a parent tells a runner it starts, in FLAME_PARENT:
// base64 of this JSON, with a format version.
type parentInfo struct {
	V           int    `json:"v"`
	Pool        string `json:"pool"`
	Runner      uint64 `json:"runner"`
	Conn        string `json:"conn"`     // how to reach the parent: "fd:3", or "tls:host:port" to dial
	Build       string `json:"build"`    // the parent's build id
	Registry    string `json:"registry"` // the parent's registry hash
	MaxMsg      int    `json:"max_msg"`
	KeepAliveMS int64  `json:"keepalive_ms"` // failsafe: ping period; no answer for 3x (>= 1s) means the parent is gone
	ParentPID   int    `json:"ppid,omitempty"`
	// With "tls:" only.
	Fingerprint string `json:"fp,omitempty"`      // hex SHA-256 of the parent's certificate, which the runner pins
	Token       string `json:"token,omitempty"`   // the launch's single-use token, base64url
	DialMS      int64  `json:"dial_ms,omitempty"` // how long the runner may take to reach the parent
}

// connTLS is the prefix of a parentInfo.Conn that a runner dials.
const connTLS = "tls:"

const parentInfoVersion = 1

func (pi parentInfo) encode() string {
	b, _ := json.Marshal(pi) // plain fields: cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeParentInfo(s string) (parentInfo, error) {
	var pi parentInfo
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return pi, fmt.Errorf("%s is not base64: %w", envParent, err)
	}
	if err := json.Unmarshal(b, &pi); err != nil {
		return pi, fmt.Errorf("%s: %w", envParent, err)
	}
	// If chains rather than switches here and in checkHello: mutation
	// testing sees the coverage of statements, and a case's condition is
	// none.
	if pi.V != parentInfoVersion {
		return pi, fmt.Errorf("%w: %s format %d, this runner reads %d", ErrVersionSkew, envParent, pi.V, parentInfoVersion)
	}
	if pi.MaxMsg <= 0 || pi.KeepAliveMS <= 0 {
		return pi, errors.New(envParent + ": bad limits")
	}
	if pi.Conn == "fd:3" {
		return pi, nil
	}
	if !strings.HasPrefix(pi.Conn, connTLS) {
		return pi, fmt.Errorf("%s: unsupported connection %q", envParent, pi.Conn)
	}
	if _, _, err := net.SplitHostPort(strings.TrimPrefix(pi.Conn, connTLS)); err != nil {
		return pi, fmt.Errorf("%s: parent address: %w", envParent, err)
	}
	if fp, err := hex.DecodeString(pi.Fingerprint); err != nil || len(fp) != sha256.Size {
		return pi, fmt.Errorf("%s: bad certificate fingerprint", envParent)
	}
	if tok, err := base64.RawURLEncoding.DecodeString(pi.Token); err != nil || len(tok) != wire.SecretLen {
		return pi, fmt.Errorf("%s: bad token", envParent)
	}
	if pi.DialMS <= 0 {
		return pi, fmt.Errorf("%s: bad dial window", envParent)
	}
	return pi, nil
}

// checkHello compares what the runner says it is with what the parent is.
func checkHello(h wire.HelloMsg, info parentInfo) error {
	if h.Proto != wire.ProtocolVersion {
		return bootFailed(fmt.Errorf("%w: runner speaks protocol %d, parent %d", ErrVersionSkew, h.Proto, wire.ProtocolVersion))
	}
	if h.Build != info.Build {
		return bootFailed(fmt.Errorf("%w: runner build %q, parent build %q: parent and runner must be the same binary", ErrVersionSkew, h.Build, info.Build))
	}
	if h.Registry != info.Registry {
		return bootFailed(fmt.Errorf("%w: runner registry %s, parent registry %s: parent and runner must register the same functions (and errors) with the same types", ErrVersionSkew, h.Registry, info.Registry))
	}
	return nil
}
