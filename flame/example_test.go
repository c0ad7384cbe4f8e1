package flame_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/goflame/goflame/flame"
)

func Example() {
	pool, err := flame.NewPool(flame.Config{Name: "thumbs", Max: 4, MaxConcurrency: 2})
	if err != nil {
		panic(err)
	}
	defer pool.Close(context.Background())

	thumb, err := flame.Call(context.Background(), pool, func(ctx context.Context) (string, error) {
		return strings.ToUpper("thumbnail"), nil // heavy work runs here
	})
	fmt.Println(thumb, err)
	// Output: THUMBNAIL <nil>
}

func ExamplePool_Call() {
	pool, err := flame.NewPool(flame.Config{Max: 2})
	if err != nil {
		panic(err)
	}
	defer pool.Close(context.Background())

	err = pool.Call(context.Background(), func(ctx context.Context) error {
		id, _ := flame.RunnerID(ctx)
		fmt.Println("running on runner", id)
		return nil
	}, flame.WithTimeout(5*time.Second))
	fmt.Println("err:", err)

	// A panic comes back as an error; the pool keeps serving.
	err = pool.Call(context.Background(), func(ctx context.Context) error { panic("boom") })
	var pe *flame.PanicError
	fmt.Println("panicked:", errors.As(err, &pe), pe.Value)
	// Output:
	// running on runner 1
	// err: <nil>
	// panicked: true boom
}

func ExampleCall() {
	pool, err := flame.NewPool(flame.Config{Max: 1})
	if err != nil {
		panic(err)
	}
	defer pool.Close(context.Background())

	sum, err := flame.Call(context.Background(), pool, func(ctx context.Context) (int, error) {
		total := 0
		for i := 1; i <= 100; i++ {
			total += i
		}
		return total, nil
	})
	fmt.Println(sum, err)
	// Output: 5050 <nil>
}

func ExamplePool_Cast() {
	pool, err := flame.NewPool(flame.Config{Max: 2})
	if err != nil {
		panic(err)
	}
	ran := make(chan struct{})
	err = pool.Cast(context.Background(), func(ctx context.Context) error {
		defer close(ran)
		return nil // work whose result nobody waits for
	})
	fmt.Println("accepted:", err)
	<-ran
	fmt.Println("cast ran")
	// Close waits for accepted casts (while its ctx allows).
	fmt.Println("closed:", pool.Close(context.Background()))
	// Output:
	// accepted: <nil>
	// cast ran
	// closed: <nil>
}

func ExamplePool_PlaceChild() {
	pool, err := flame.NewPool(flame.Config{Max: 1})
	if err != nil {
		panic(err)
	}
	defer pool.Close(context.Background())

	child, err := pool.PlaceChild(context.Background(), func(ctx context.Context) error {
		<-ctx.Done() // a long-lived worker: runs until stopped
		return ctx.Err()
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("child on runner", child.RunnerID(), "holds", pool.Stats().InUse, "slot")
	child.Stop()
	fmt.Println("stopped:", child.Err())
	// Output:
	// child on runner 1 holds 1 slot
	// stopped: context canceled
}

func ExampleConfig_hooks() {
	var mu sync.Mutex
	var events []string
	record := func(s string) { mu.Lock(); events = append(events, s); mu.Unlock() }

	pool, err := flame.NewPool(flame.Config{
		Max: 2, MaxConcurrency: 1,
		OnGrowStart: func(ev flame.GrowEvent) { record(fmt.Sprintf("grow start #%d count=%d", ev.RunnerID, ev.Count)) },
		OnGrowEnd: func(ev flame.GrowEvent, err error) {
			record(fmt.Sprintf("grow end #%d count=%d err=%v", ev.RunnerID, ev.Count, err))
		},
		OnShrink: func(ev flame.ShrinkEvent) {
			record(fmt.Sprintf("shrink #%d count=%d reason=%v", ev.RunnerID, ev.Count, ev.Reason))
		},
	})
	if err != nil {
		panic(err)
	}
	_ = pool.Call(context.Background(), func(context.Context) error { return nil })
	_ = pool.Close(context.Background()) // waits for the hooks too
	for _, e := range events {
		fmt.Println(e)
	}
	// Output:
	// grow start #1 count=1
	// grow end #1 count=1 err=<nil>
	// shrink #1 count=0 reason=flame: pool closed
}

func ExamplePool_Resize() {
	pool, err := flame.NewPool(flame.Config{Min: 1, Max: 2})
	if err != nil {
		panic(err)
	}
	defer pool.Close(context.Background())

	fmt.Println(pool.Resize(3, 1)) // invalid: Min above Max
	fmt.Println(pool.Resize(0, 8)) // scale to zero when idle, up to 8 runners
	st := pool.Stats()
	fmt.Println("min", st.Min, "max", st.Max)
	// Output:
	// flame: invalid config: Min (3) must not exceed Max (1)
	// <nil>
	// min 0 max 8
}

// greet is registered at package level, so that a runner process (a copy of
// this program) registers it too.
var greet = flame.Register("example.greet", func(ctx context.Context, name string) (string, error) {
	return "hello, " + name, nil
})

func ExampleRegister() {
	pool, err := flame.NewPool(flame.Config{Max: 1}) // LocalBackend: runs in this process
	if err != nil {
		panic(err)
	}
	defer pool.Close(context.Background())

	// Arguments and result go through the codec even here, so a value that
	// could not cross to a runner process fails in tests too.
	s, err := greet.Call(context.Background(), pool, "world")
	fmt.Println(s, err)
	// Output: hello, world <nil>
}
