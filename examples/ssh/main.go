// Command ssh runs its work on runners on another machine, started over
// ssh: a copy of this program, installed on the host, dials back to this
// parent over TCP and TLS.
//
//	go run ./examples/ssh -host worker-1 -path /usr/local/bin/ssh-example -advertise 10.0.0.5:7070
//
// ssh must pass FLAME_PARENT on to the runner: the client sends it
// (SendEnv, set below) and the host's sshd must accept it (AcceptEnv
// FLAME_PARENT in sshd_config). The parent must be reachable from the host
// at -advertise.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"

	"github.com/goflame/goflame/flame"
)

var hostname = flame.Register("ssh.hostname", func(ctx context.Context, _ struct{}) (string, error) {
	return os.Hostname()
})

func main() {
	flame.Main() // on the host, the runner serves here and exits

	host := flag.String("host", "", "the ssh destination of the runners")
	remotePath := flag.String("path", "", "this program's path on that host")
	listen := flag.String("listen", ":7070", "the address this parent listens on for runners")
	advertise := flag.String("advertise", "", "the address the runners dial, host:port")
	flag.Parse()
	if *host == "" || *remotePath == "" || *advertise == "" {
		flag.Usage()
		os.Exit(2)
	}

	pool, err := flame.NewPool(flame.Config{Max: 8, Backend: &flame.RemoteBackend{
		Listen:    *listen,    // a fixed port, to open in a firewall or a network policy
		Advertise: *advertise, // what runners dial (behind NAT or in a pod it differs)
		Launcher:  flame.CommandLauncher{Path: "ssh", Args: []string{"-o", "SendEnv=FLAME_PARENT", *host, *remotePath}},
	}})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(context.Background())

	name, err := hostname.Call(context.Background(), pool, struct{}{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("ran on", name)
}
