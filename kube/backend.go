package kube

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/goflame/goflame/flame"
)

// NewBackend returns a flame.RemoteBackend whose runners are pods that l
// launches. It listens on port on every interface of the parent pod (0:
// any free port; name one to open it in a network policy) and tells each
// runner to dial the pod's IP, from the POD_IP environment variable (the
// downward API, see the README's manifest). Set the returned backend's
// other fields (KeepAlive, MaxMessageSize, ...) before the pool uses it.
func NewBackend(l *Launcher, port int) (*flame.RemoteBackend, error) {
	ip := os.Getenv("POD_IP")
	if net.ParseIP(ip) == nil {
		return nil, fmt.Errorf("%w: kube.NewBackend: POD_IP is %q: set it from the downward API (status.podIP)", flame.ErrInvalidConfig, ip)
	}
	if port < 0 || port > 65535 {
		return nil, fmt.Errorf("%w: kube.NewBackend: port %d", flame.ErrInvalidConfig, port)
	}
	return &flame.RemoteBackend{
		Launcher:  l,
		Listen:    ":" + strconv.Itoa(port),
		Advertise: ip, // the listener's port goes with it
	}, nil
}
