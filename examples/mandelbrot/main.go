// Command mandelbrot renders a large Mandelbrot image tile by tile in
// runner processes and writes it as a PNG: work a program would offload.
//
// The program is its own runner: main calls flame.Main first, so a copy
// started by the pool's ProcessBackend renders tiles (the registered
// function renderTile) instead of running main. The pool starts from zero;
// every tile is submitted at once, runner processes boot as the queue
// demands (up to -max), and once the image is done they idle down and
// exit. Grow and shrink events are printed as they happen, then how many
// tiles each runner rendered.
//
//	go run ./examples/mandelbrot
//	go run ./examples/mandelbrot -width 8000 -height 6000 -max 6 -out big.png
package main

import (
	"context"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/goflame/goflame/flame"
)

// Tile is one rectangle of the image to render.
type Tile struct {
	X, Y, W, H    int     // in pixels
	Width, Height int     // of the whole image
	CX, CY, Span  float64 // view: center and width in the complex plane
	Iter          int     // iteration limit
}

// Rendered is a tile's pixels (palette indices, row by row) and where it
// was rendered.
type Rendered struct {
	Pix    []byte
	Runner uint64
	PID    int
}

// renderTile runs in a runner process.
var renderTile = flame.Register("mandelbrot.tile", func(ctx context.Context, t Tile) (Rendered, error) {
	pix := make([]byte, t.W*t.H)
	scale := t.Span / float64(t.Width)
	for y := range t.H {
		if y%16 == 0 && ctx.Err() != nil {
			return Rendered{}, ctx.Err()
		}
		ci := t.CY + (float64(t.Y+y)-float64(t.Height)/2)*scale
		for x := range t.W {
			cr := t.CX + (float64(t.X+x)-float64(t.Width)/2)*scale
			pix[y*t.W+x] = shade(cr, ci, t.Iter)
		}
	}
	id, _ := flame.RunnerID(ctx)
	return Rendered{Pix: pix, Runner: id, PID: os.Getpid()}, nil
})

// shade iterates z = z² + c and returns a palette index: 0 inside the set,
// else a smooth escape count.
func shade(cr, ci float64, limit int) byte {
	var zr, zi float64
	for i := range limit {
		zr, zi = zr*zr-zi*zi+cr, 2*zr*zi+ci
		if m := zr*zr + zi*zi; m > 256 {
			nu := float64(i) + 1 - math.Log2(math.Log2(m)/2)
			return byte(1 + int(nu*4)%255)
		}
	}
	return 0
}

func palette() color.Palette {
	p := make(color.Palette, 256)
	p[0] = color.RGBA{0, 0, 0, 255}
	for i := 1; i < 256; i++ {
		t := float64(i) / 255
		p[i] = color.RGBA{
			R: uint8(255 * (0.5 + 0.5*math.Cos(2*math.Pi*(t+0.00)))),
			G: uint8(255 * (0.5 + 0.5*math.Cos(2*math.Pi*(t+0.15)))),
			B: uint8(255 * (0.5 + 0.5*math.Cos(2*math.Pi*(t+0.35)))),
			A: 255,
		}
	}
	return p
}

func main() {
	flame.Main() // a runner process serves tiles here and never returns

	width := flag.Int("width", 4800, "image width in pixels")
	height := flag.Int("height", 3200, "image height in pixels")
	tileSize := flag.Int("tile", 320, "tile size in pixels")
	iter := flag.Int("iter", 600, "iteration limit")
	maxRunners := flag.Int("max", 4, "Max runner processes")
	slots := flag.Int("slots", 2, "MaxConcurrency: tiles a runner renders at once")
	idle := flag.Duration("idle", time.Second, "IdleShutdownAfter: idle runners exit after this")
	out := flag.String("out", filepath.Join(os.TempDir(), "mandelbrot.png"), "output PNG file")
	flag.Parse()

	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Printf("%7.3fs  %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var up sync.WaitGroup // runners not yet shut down
	pool, err := flame.NewPool(flame.Config{
		Name:              "mandelbrot",
		Max:               *maxRunners,
		MaxConcurrency:    *slots,
		Backend:           flame.ProcessBackend{Logger: logger},
		IdleShutdownAfter: *idle,
		Timeout:           5 * time.Minute,
		Logger:            logger,
		OnGrowStart: func(ev flame.GrowEvent) {
			up.Add(1)
			logf("grow    runner %d booting (runners: %d)", ev.RunnerID, ev.Count)
		},
		OnGrowEnd: func(ev flame.GrowEvent, err error) {
			if err != nil {
				up.Done()
				logf("grow    runner %d failed: %v", ev.RunnerID, err)
				return
			}
			logf("grow    runner %d up (runners: %d)", ev.RunnerID, ev.Count)
		},
		OnShrink: func(ev flame.ShrinkEvent) {
			defer up.Done()
			logf("shrink  runner %d down: %v (runners: %d)", ev.RunnerID, ev.Reason, ev.Count)
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}

	var tiles []Tile
	for y := 0; y < *height; y += *tileSize {
		for x := 0; x < *width; x += *tileSize {
			tiles = append(tiles, Tile{X: x, Y: y, W: min(*tileSize, *width-x), H: min(*tileSize, *height-y),
				Width: *width, Height: *height, CX: -0.743643887037151, CY: 0.131825904205330, Span: 0.004, Iter: *iter})
		}
	}
	logf("rendering %dx%d in %d tiles of %dpx; up to %d runner processes x %d tiles each",
		*width, *height, len(tiles), *tileSize, *maxRunners, *slots)

	img := image.NewPaletted(image.Rect(0, 0, *width, *height), palette())
	type count struct{ tiles, pid int }
	perRunner := map[uint64]*count{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	for _, t := range tiles {
		wg.Go(func() {
			r, err := renderTile.Call(context.Background(), pool, t)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			for y := range t.H {
				copy(img.Pix[(t.Y+y)*img.Stride+t.X:], r.Pix[y*t.W:(y+1)*t.W])
			}
			c := perRunner[r.Runner]
			if c == nil {
				c = &count{pid: r.PID}
				perRunner[r.Runner] = c
			}
			c.tiles++
		})
	}
	wg.Wait()
	if firstErr != nil {
		fmt.Fprintln(os.Stderr, "render:", firstErr)
		pool.Close(context.Background())
		os.Exit(1)
	}
	logf("all %d tiles rendered", len(tiles))
	ids := make([]uint64, 0, len(perRunner))
	for id := range perRunner {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		logf("        runner %d (pid %d): %d tiles", id, perRunner[id].pid, perRunner[id].tiles)
	}

	f, err := os.Create(*out)
	if err == nil {
		err = png.Encode(f, img)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "write:", err)
		pool.Close(context.Background())
		os.Exit(1)
	}
	logf("wrote %s", *out)

	logf("idle: runners exit after %v without work", *idle)
	idleDown := make(chan struct{})
	go func() {
		up.Wait()
		close(idleDown)
	}()
	select {
	case <-idleDown:
	case <-time.After(*idle*2 + 10*time.Second):
		logf("runners still up; closing the pool")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pool.Close(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "close:", err)
		os.Exit(1)
	}
	st := pool.Stats()
	logf("done: %d runner processes booted, %d shut down, %d running", st.Booted, st.Shrunk, st.Runners)
}
