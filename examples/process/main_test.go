package main

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/flame"
)

// A test binary whose code uses ProcessBackend is its own runner, so its
// TestMain calls flame.Main first, as main does.
func TestMain(m *testing.M) {
	flame.Main()
	os.Exit(m.Run())
}

// The README's example runs: a tile renders in a runner process.
func TestExampleRendersInARunnerProcess(t *testing.T) {
	main()
}

// The function registered with JSON renders the same tile as with CBOR.
func TestJSONCodecCarriesTheSameTile(t *testing.T) {
	pool, err := flame.NewPool(flame.Config{Max: 1, Backend: flame.ProcessBackend{}})
	require.NoError(t, err)
	defer pool.Close(context.Background())
	viaCBOR, err := render.Call(context.Background(), pool, Tile{X: 1, Y: 2, Size: 32})
	require.NoError(t, err)
	viaJSON, err := renderJSON.Call(context.Background(), pool, Tile{X: 1, Y: 2, Size: 32})
	require.NoError(t, err)
	require.Equal(t, viaCBOR, viaJSON)
	require.Len(t, viaCBOR, 32*32)
}
