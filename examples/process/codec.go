package main

import "github.com/goflame/goflame/flame"

// The same function with JSON on the wire: readable, and its types' MarshalJSON
// and UnmarshalJSON are used. A []byte goes as base64, several times slower.
var renderJSON = flame.Register("render-tile-json", renderTile, flame.WithCodec(flame.JSON))
