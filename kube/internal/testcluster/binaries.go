package testcluster

import (
	"fmt"
	"os"
	"path/filepath"
)

// The control plane the tests run, as kube/hack/build-control-plane.sh
// builds it by default.
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.6.17"
)

// binaries are the control plane's programs.
var binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}

// BinDir finds the control plane's programs: in GOFLAME_KUBE_BIN when set,
// else where build-control-plane.sh puts them by default. The error says
// how to build them.
func BinDir() (string, error) {
	dir := os.Getenv("GOFLAME_KUBE_BIN")
	from := "GOFLAME_KUBE_BIN"
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("testcluster: no cache directory (%v): set GOFLAME_KUBE_BIN to the directory kube/hack/build-control-plane.sh prints", err)
		}
		dir = filepath.Join(cache, "goflame-kube", KubernetesVersion+"-etcd"+EtcdVersion)
		from = "the default cache directory"
	}
	for _, b := range binaries {
		st, err := os.Stat(filepath.Join(dir, b))
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("testcluster: %s is not in %s (%s): build the control plane first with kube/hack/build-control-plane.sh "+
				"(it builds etcd %s and Kubernetes %s from the Go module proxy: about 8 minutes and 160 MiB of downloads the first time, "+
				"cached after), then set GOFLAME_KUBE_BIN to the directory it prints if that is not the default; "+
				"or set GOFLAME_NO_KUBE=1 to skip the tests that need it", b, dir, from, EtcdVersion, KubernetesVersion)
		}
	}
	return dir, nil
}
