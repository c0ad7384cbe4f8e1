package flame

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
)

// useDefaultLogger makes slog.Default() write to buf for the test.
func useDefaultLogger(t *testing.T, buf *syncBuffer) {
	prev := slog.Default()
	slog.SetDefault(newTextLogger(buf))
	t.Cleanup(func() { slog.SetDefault(prev) })
}

// With Config.Logger nil the pool logs to slog.Default(), so failed casts
// and panics do not vanish.
func TestNilLoggerLogsToSlogDefault(t *testing.T) {
	var buf syncBuffer
	useDefaultLogger(t, &buf)
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Name: "quiet-by-mistake", Min: 1, Max: 1})
		ctx := context.Background()
		assert.NoError(t, p.Cast(ctx, func(context.Context) error { panic("cast exploded") }))
		assert.NoError(t, p.Cast(ctx, func(context.Context) error { return errors.New("cast went wrong") }))
		synctest.Wait()
	})
	logs := buf.String()
	assert.Contains(t, logs, "cast exploded")
	assert.Contains(t, logs, "cast went wrong")
	assert.Contains(t, logs, "pool=quiet-by-mistake")
}

// slog.DiscardHandler silences the pool, as Config.Logger documents.
func TestDiscardLoggerSilencesThePool(t *testing.T) {
	var buf syncBuffer
	useDefaultLogger(t, &buf)
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, Logger: slog.New(slog.DiscardHandler)})
		assert.NoError(t, p.Cast(context.Background(), func(context.Context) error { panic("nobody hears this") }))
		synctest.Wait()
	})
	assert.Empty(t, buf.String())
}
