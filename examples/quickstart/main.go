// Command quickstart is the README's first example: a pool of in-process
// runners, with Call, Cast and PlaceChild.
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/goflame/goflame/flame"
)

func main() {
	pool, err := flame.NewPool(flame.Config{
		Name:              "thumbs",
		Max:               10,               // at most 10 runners (booted + booting)
		MaxConcurrency:    4,                // slots per runner
		IdleShutdownAfter: 30 * time.Second, // idle runners go away (Min stay)
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(context.Background())

	// Call: run fn on a runner and wait for its result.
	n, err := flame.Call(context.Background(), pool, func(ctx context.Context) (int, error) {
		return 42, nil // heavy work goes here; ctx is cancelled at the execution limit
	}, flame.WithTimeout(time.Minute))
	fmt.Println(n, err)

	// Cast: fire and forget (errors and panics are logged).
	if err := pool.Cast(context.Background(), func(ctx context.Context) error { return nil }); err != nil {
		log.Fatal(err)
	}

	// PlaceChild: long-lived work that holds its slot until it returns or is stopped.
	child, err := pool.PlaceChild(context.Background(), func(ctx context.Context) error {
		<-ctx.Done()
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	child.Stop()

	fmt.Printf("%+v\n", pool.Stats())
}
