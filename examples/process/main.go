// Command process is the README's ProcessBackend example: a registered
// function run in runner processes, copies of this program.
//
//	go run ./examples/process
package main

import (
	"context"
	"fmt"
	"log"

	"github.com/goflame/goflame/flame"
)

// Tile is the work to do: a registered function's arguments and result
// cross the process boundary through the codec, so they are plain data.
type Tile struct{ X, Y, Size int }

// render runs in a runner process.
var render = flame.Register("render-tile", renderTile)

func renderTile(ctx context.Context, t Tile) ([]byte, error) {
	pix := make([]byte, t.Size*t.Size)
	for i := range pix {
		pix[i] = byte((t.X + t.Y + i) % 256) // stands for the heavy work
	}
	return pix, nil
}

func main() {
	flame.Main() // first line: in a runner process this serves and exits; otherwise it returns

	pool, err := flame.NewPool(flame.Config{Max: 4, MaxConcurrency: 2, Backend: flame.ProcessBackend{}})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(context.Background())

	pix, err := render.Call(context.Background(), pool, Tile{X: 0, Y: 0, Size: 64}) // also render.Cast, render.Place
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("rendered", len(pix), "bytes in a runner process")
}
