package testcluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
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

// Build runs kube/hack/build-control-plane.sh when BinDir finds nothing
// and GOFLAME_KUBE_BIN is not set, so that the tests work on a fresh
// checkout: about 8 minutes and 160 MiB of downloads the first time, then
// nothing. The script's progress goes to stderr. Call it before
// testing.M.Run: the test timeout does not run yet there.
func Build() error {
	if _, err := BinDir(); err == nil || os.Getenv("GOFLAME_KUBE_BIN") != "" {
		return err
	}
	_, file, _, ok := runtime.Caller(0) // this file, in internal/kubetest/testcluster
	if !ok {
		return errors.New("testcluster: cannot find kube/hack/build-control-plane.sh")
	}
	script := filepath.Join(filepath.Dir(file), "..", "..", "..", "kube", "hack", "build-control-plane.sh")
	fmt.Fprintf(os.Stderr, "testcluster: building the Kubernetes control plane with %s (once; about 8 minutes)\n", script)
	cmd := exec.Command(script)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("testcluster: %s failed (%v); run it by hand to see why, or set GOFLAME_NO_KUBE=1 to skip the tests that need it", script, err)
	}
	if dir := strings.TrimSpace(string(out)); dir != "" {
		if i := strings.LastIndexByte(dir, '\n'); i >= 0 {
			dir = dir[i+1:]
		}
		fmt.Fprintf(os.Stderr, "testcluster: control plane in %s\n", dir)
	}
	_, err = BinDir()
	return err
}
