package flame

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"

	"github.com/goflame/goflame/flame/internal/wire"
)

func TestRegisterErrorRejectsBadInput(t *testing.T) {
	errA := errors.New("a")
	RegisterError("unit.a", errA)
	t.Cleanup(func() { unregisterError("unit.a") })
	for name, f := range map[string]func(){
		"empty code":       func() { RegisterError("", errors.New("x")) },
		"code too long":    func() { RegisterError(strings.Repeat("c", wire.MaxErrorCodeLen+1), errors.New("x")) },
		"nil error":        func() { RegisterError("unit.nil", nil) },
		"duplicate code":   func() { RegisterError("unit.a", errors.New("other")) },
		"error registered": func() { RegisterError("unit.again", errA) },
	} {
		assert.Panics(t, f, name)
	}
}

// A code of exactly the longest length is a valid code.
func TestRegisterErrorTakesACodeOfTheLongestLength(t *testing.T) {
	code, err := strings.Repeat("c", wire.MaxErrorCodeLen), errors.New("longest")
	assert.NotPanics(t, func() { RegisterError(code, err) })
	t.Cleanup(func() { unregisterError(code) })
	assert.Equal(t, err, lookupError(code))
}

// Arguments and results that fill the message size limit exactly still
// cross; one byte more is too large.
func TestPayloadsExactlyAtTheLimitPass(t *testing.T) {
	m := wire.CallMsg{Kind: wire.KindCall, ID: "f", Args: []byte("0123456789")}
	limit := wire.CallPayloadLen(m)
	assert.NoError(t, argsTooLarge(m, limit))
	var fe *FuncError
	assert.ErrorAs(t, argsTooLarge(m, limit-1), &fe)
	assert.Equal(t, CodeTooLarge, fe.Code)

	res := []byte("0123456789")
	assert.Nil(t, resultTooLarge("f", res, len(res)))
	assert.Equal(t, CodeTooLarge, resultTooLarge("f", res, len(res)-1).Code)
}

// An error whose frame is exactly at the limit crosses whole; one whose
// stack alone puts it over loses the stack and keeps its whole message.
func TestFitErrorCutsNothingItDoesNotHaveTo(t *testing.T) {
	m := wire.ErrorMsg{Code: wire.CodePanic, Message: "boom", Stack: []byte("stack")}
	assert.Equal(t, m, fitError(m, wire.ErrorPayloadLen(m)))

	m = wire.ErrorMsg{Code: wire.CodePanic, Message: "a message that just fits", Stack: []byte(strings.Repeat("s", 9000))}
	limit := wire.ErrorPayloadLen(wire.ErrorMsg{Code: m.Code, Message: m.Message})
	got := fitError(m, limit)
	assert.Equal(t, m.Message, got.Message)
	assert.Empty(t, got.Stack)
	assert.LessOrEqual(t, wire.ErrorPayloadLen(got), limit)
}

// Registered error codes are part of the registry a runner's handshake
// compares: a parent and a runner that register different errors refuse
// each other (version skew) rather than lose an error's identity.
func TestRegistryHashCoversRegisteredErrors(t *testing.T) {
	before := registryHash()
	RegisterError("unit.hash", errors.New("h"))
	after := registryHash()
	unregisterError("unit.hash")
	assert.NotEqual(t, before, after)
	assert.Equal(t, before, registryHash())
}

// Every registered error in the chain is named, in registration order.
func TestRegisteredInFindsEveryRegisteredErrorInTheChain(t *testing.T) {
	e1, e2, e3 := errors.New("one"), errors.New("two"), errors.New("three")
	RegisterError("unit.one", e1)
	RegisterError("unit.two", e2)
	RegisterError("unit.three", e3)
	defer func() {
		for _, c := range []string{"unit.one", "unit.two", "unit.three"} {
			unregisterError(c)
		}
	}()
	err := errors.Join(errors.New("plain"), wrapf(e3), wrapf(e1))
	assert.Equal(t, []string{"unit.one", "unit.three"}, registeredIn(err))
	fe := asFuncError("f", err)
	assert.ErrorIs(t, fe, e1)
	assert.ErrorIs(t, fe, e3)
	assert.NotErrorIs(t, fe, e2)
}

func wrapf(err error) error { return &wrapError{kind: errors.New("ctx"), err: err} }

// fitError cuts a message or stack so that the frame fits, on a rune
// boundary, and says so; what fits is left alone.
func TestFitErrorCutsToTheLimit(t *testing.T) {
	small := wire.ErrorMsg{Code: wire.CodePanic, Message: "boom", Stack: []byte("stack")}
	assert.Equal(t, small, fitError(small, 1<<10))
	for _, limit := range []int{64, 100, 1 << 10, 4 << 10} {
		m := wire.ErrorMsg{Code: wire.CodePanic, Message: strings.Repeat("ü", 5000), Registered: []string{"r"}, Stack: []byte(strings.Repeat("s", 9000))}
		got := fitError(m, limit)
		assert.LessOrEqual(t, wire.ErrorPayloadLen(got), limit, "limit %d", limit)
		assert.True(t, utf8.ValidString(got.Message))
		assert.Equal(t, []string{"r"}, got.Registered)
		assert.Equal(t, wire.CodePanic, got.Code)
		assert.True(t, strings.HasSuffix(got.Message, truncatedMark) || strings.HasSuffix(string(got.Stack), truncatedMark))
	}
	// A big stack goes first: the message stays whole when that suffices.
	m := wire.ErrorMsg{Code: wire.CodePanic, Message: "short", Stack: []byte(strings.Repeat("s", 9000))}
	got := fitError(m, 1<<10)
	assert.Equal(t, "short", got.Message)
	assert.True(t, strings.HasSuffix(string(got.Stack), truncatedMark))
}

// A message that is not UTF-8 (an error quoting binary data) is cut as
// far as needed, never past its start.
func TestFitErrorCutsAMessageThatIsNotUTF8(t *testing.T) {
	m := wire.ErrorMsg{Code: wire.CodeHandler, Message: strings.Repeat("\x80", 5000)}
	got := fitError(m, 1<<10)
	assert.Equal(t, truncatedMark, got.Message)
}

// unregisterError removes a registration a test made.
func unregisterError(code string) {
	registeredErrors.mu.Lock()
	defer registeredErrors.mu.Unlock()
	delete(registeredErrors.errs, code)
	registeredErrors.codes = slices.DeleteFunc(registeredErrors.codes, func(c string) bool { return c == code })
	registry.hash.Store(nil)
}
