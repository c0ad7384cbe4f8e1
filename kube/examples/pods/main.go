// Command pods is an example app whose work runs on runner pods: an HTTP
// server whose /primes?below=N counts primes on a runner, one pod per
// runner, up to ten, none when idle. It runs in a pod made by
// kube/deploy/deployment.yaml, as the service account of
// kube/deploy/rbac.yaml; every runner pod is a copy of it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"strconv"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/goflame/goflame/flame"
	"github.com/goflame/goflame/kube"
)

// countPrimes is the work: heavy enough to want a machine of its own.
var countPrimes = flame.Register("pods.primes", func(ctx context.Context, below int) (int, error) {
	n := 0
	for i := 2; i < below; i++ {
		if i%4096 == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		prime := true
		for d := 2; d*d <= i; d++ {
			if i%d == 0 {
				prime = false
				break
			}
		}
		if prime {
			n++
		}
	}
	return n, nil
})

func main() {
	flame.Main() // in a runner pod, this serves the parent and never returns
	listen := flag.String("listen", ":8080", "HTTP address")
	flamePort := flag.Int("flame-port", 7300, "port the runners dial back to (the Deployment's containerPort)")
	flag.Parse()

	cfg, err := rest.InClusterConfig()
	if err != nil {
		log.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 50, 100 // a burst of boots is a burst of pod creations
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		log.Fatal(err)
	}
	backend, err := kube.NewBackend(&kube.Launcher{Client: client}, *flamePort)
	if err != nil {
		log.Fatal(err)
	}
	pool, err := newPool(backend)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(context.Background())

	http.HandleFunc("/primes", func(w http.ResponseWriter, r *http.Request) {
		below, err := strconv.Atoi(r.URL.Query().Get("below"))
		if err != nil || below < 2 || below > 1e9 {
			http.Error(w, "below: a number from 2 to 1e9", http.StatusBadRequest)
			return
		}
		n, err := countPrimes.Call(r.Context(), pool, below)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "%d primes below %d\n", n, below)
	})
	log.Fatal(http.ListenAndServe(*listen, nil))
}

func newPool(backend *flame.RemoteBackend) (*flame.Pool, error) {
	return flame.NewPool(flame.Config{
		Name:              "primes",
		Max:               10,
		MaxConcurrency:    2,
		Backend:           backend,
		BootTimeout:       2 * time.Minute, // an image pull on a new node takes a while
		IdleShutdownAfter: time.Minute,
	})
}
