// Package testcluster runs a Kubernetes control plane on loopback for
// tests: etcd, kube-apiserver (TLS, RBAC, service-account tokens),
// kube-controller-manager (its garbage collector) and kube-scheduler, from
// the binaries kube/hack/build-control-plane.sh builds. There is no
// kubelet: package testnode plays one.
package testcluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Cluster is a running control plane. Admin is in system:masters.
type Cluster struct {
	Dir    string // its data, certificates and logs
	Host   string // the API server's URL
	CAData []byte // the API server's CA, PEM
	Admin  kubernetes.Interface

	adminToken string
	procs      []*proc // in start order
}

// proc is one control-plane program.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when it has exited
	err  error         // of Wait, once done
}

// Start starts a control plane whose files go into dir (it must exist and
// be empty) and returns once the API server is ready and the controller
// manager and scheduler are healthy. On error nothing is left running.
func Start(ctx context.Context, dir string) (_ *Cluster, err error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	p, err := makePKI(dir)
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	etcdPort, peerPort, apiPort, kcmPort, schedPort := ports[0], ports[1], ports[2], ports[3], ports[4]
	var tok [24]byte
	_, _ = rand.Read(tok[:])
	c := &Cluster{Dir: dir, Host: "https://127.0.0.1:" + strconv.Itoa(apiPort), CAData: p.caPEM, adminToken: hex.EncodeToString(tok[:])}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w%s", err, c.logTails())
			c.Stop()
		}
	}()
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(c.adminToken+`,goflame-test-admin,goflame-test-admin,"system:masters"`+"\n"), 0o600); err != nil {
		return nil, err
	}
	kubeconfig, err := c.writeKubeconfig(p.caFile)
	if err != nil {
		return nil, err
	}

	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	if err := c.start(bin, "etcd",
		"--name=goflame-test", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=goflame-test="+peerURL,
		"--log-level=warn", "--unsafe-no-fsync"); err != nil {
		return nil, err
	}
	if err := c.waitHTTP(ctx, "etcd", etcdURL+"/health", `"health":"true"`, nil); err != nil {
		return nil, err
	}
	if err := c.start(bin, "kube-apiserver",
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(apiPort),
		"--tls-cert-file="+p.certFile, "--tls-private-key-file="+p.keyFile, "--cert-dir="+filepath.Join(dir, "apiserver"),
		"--service-account-key-file="+p.saKeyFile, "--service-account-signing-key-file="+p.saKeyFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--token-auth-file="+tokens, "--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.0.0.0/24", "--endpoint-reconciler-type=none",
		"--allow-privileged=true"); err != nil {
		return nil, err
	}
	cfg := c.Config(c.adminToken)
	if c.Admin, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if err := c.waitHTTP(ctx, "kube-apiserver", c.Host+"/readyz", "ok", c.authed); err != nil {
		return nil, err
	}
	common := []string{"--kubeconfig=" + kubeconfig, "--authentication-kubeconfig=" + kubeconfig, "--authorization-kubeconfig=" + kubeconfig,
		"--leader-elect=false", "--bind-address=127.0.0.1"}
	if err := c.start(bin, "kube-controller-manager", append(common,
		"--controllers=garbagecollector", "--use-service-account-credentials=false",
		"--secure-port="+strconv.Itoa(kcmPort), "--cert-dir="+filepath.Join(dir, "kcm"))...); err != nil {
		return nil, err
	}
	if err := c.start(bin, "kube-scheduler", append(common,
		"--secure-port="+strconv.Itoa(schedPort), "--cert-dir="+filepath.Join(dir, "scheduler"))...); err != nil {
		return nil, err
	}
	// Their serving certificates are self-made: health is all we ask of them.
	insecure := func(r *http.Request) (*http.Response, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // loopback, our own process
		defer tr.CloseIdleConnections()
		return (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(r)
	}
	if err := c.waitHTTP(ctx, "kube-controller-manager", "https://127.0.0.1:"+strconv.Itoa(kcmPort)+"/healthz", "ok", insecure); err != nil {
		return nil, err
	}
	if err := c.waitHTTP(ctx, "kube-scheduler", "https://127.0.0.1:"+strconv.Itoa(schedPort)+"/healthz", "ok", insecure); err != nil {
		return nil, err
	}
	return c, nil
}

// Config is a client configuration for the API server with a bearer
// token, with rate limits high enough for tests that boot in bursts.
func (c *Cluster) Config(token string) *rest.Config {
	return &rest.Config{
		Host:            c.Host,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CAData},
		QPS:             200,
		Burst:           400,
	}
}

// authed does a request as the admin, trusting the cluster's CA.
func (c *Cluster) authed(r *http.Request) (*http.Response, error) {
	tr, err := rest.TransportFor(c.Config(c.adminToken))
	if err != nil {
		return nil, err
	}
	return (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(r)
}

func (c *Cluster) writeKubeconfig(caFile string) (string, error) {
	path := filepath.Join(c.Dir, "kubeconfig")
	conf := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: goflame-test
  cluster: {server: %q, certificate-authority: %q}
users:
- name: admin
  user: {token: %q}
contexts:
- name: goflame-test
  context: {cluster: goflame-test, user: admin}
current-context: goflame-test
`, c.Host, caFile, c.adminToken)
	return path, os.WriteFile(path, []byte(conf), 0o600)
}

// start runs one program, its output into a log file. It dies with this
// process (the parent-death signal), so a killed test leaves nothing.
func (c *Cluster) start(bin, name string, args ...string) error {
	logPath := filepath.Join(c.Dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testcluster: starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	c.procs = append(c.procs, p)
	return nil
}

// waitHTTP polls url until its body contains want, the program exits, or
// a minute passes. There is nothing to wait on but the port: a poll.
func (c *Cluster) waitHTTP(ctx context.Context, name, url, want string, do func(*http.Request) (*http.Response, error)) error {
	if do == nil {
		do = (&http.Client{Timeout: 5 * time.Second}).Do
	}
	p := c.procs[len(c.procs)-1]
	for _, q := range c.procs {
		if q.name == name {
			p = q
		}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := do(req); err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), want) {
				return nil
			}
			last = fmt.Sprintf("HTTP %d: %.200s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			return fmt.Errorf("testcluster: %s exited (%v) before it was ready", name, p.err)
		case <-ctx.Done():
			return fmt.Errorf("testcluster: %s not ready: %s: %w", name, last, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop stops the programs, last started first (the API server before
// etcd: without etcd it keeps retrying), each with SIGTERM and then, after
// five seconds, SIGKILL.
func (c *Cluster) Stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	c.procs = nil
}

// Exited reports a program of the control plane that has exited, if any.
func (c *Cluster) Exited() error {
	var errs []error
	for _, p := range c.procs {
		select {
		case <-p.done:
			errs = append(errs, fmt.Errorf("testcluster: %s exited: %v", p.name, p.err))
		default:
		}
	}
	return errors.Join(errs...)
}

// logTails is the end of each program's log, for an error.
func (c *Cluster) logTails() string {
	var b strings.Builder
	for _, p := range c.procs {
		data, _ := os.ReadFile(p.log)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(&b, "\n--- last lines of %s ---\n%s", p.log, strings.Join(lines, "\n"))
	}
	return b.String()
}

// freePorts finds n ports on 127.0.0.1 that nothing listens on. Another
// process may take one before the program that is given it does: the
// program then fails to start, and says so.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
