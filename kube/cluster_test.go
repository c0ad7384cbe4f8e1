//go:build linux

package kube_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/goflame/goflame/flame"
	"github.com/goflame/goflame/internal/testnet"
	"github.com/goflame/goflame/kube"
	"github.com/goflame/goflame/kube/internal/testcluster"
	"github.com/goflame/goflame/kube/internal/testnode"
)

func TestMain(m *testing.M) {
	flame.Main() // a runner pod is this test binary: it serves and exits here
	code := m.Run()
	if theEnv != nil {
		theEnv.stop()
	}
	os.Exit(code)
}

// env is the control plane, the node that runs its pods, and the network
// the pods live on; started once, by the first test that needs it.
type env struct {
	c    *testcluster.Cluster
	node *testnode.Node
	net  *testnet.Net
	log  *ring // the node's and the pods' output
	dir  string
}

var (
	envOnce sync.Once
	theEnv  *env
	envErr  error
)

// cluster returns the test cluster, starting it the first time. It fails
// the test, saying how to build the control plane, when it cannot start;
// GOFLAME_NO_KUBE=1 skips instead.
func cluster(t *testing.T) *env {
	t.Helper()
	if os.Getenv("GOFLAME_NO_KUBE") == "1" {
		t.Skip("GOFLAME_NO_KUBE=1: no Kubernetes control plane")
	}
	envOnce.Do(func() { theEnv, envErr = startEnv() })
	require.NoError(t, envErr)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the node's log, last lines:\n%s", theEnv.log)
		}
	})
	return theEnv
}

func startEnv() (_ *env, err error) {
	if err := testnet.Available(); err != nil {
		return nil, fmt.Errorf("the pods need network namespaces (root and iproute2): %w", err)
	}
	if _, err := testcluster.BinDir(); err != nil {
		return nil, err
	}
	e := &env{log: &ring{max: 60}}
	defer func() {
		if err != nil {
			e.stop()
		}
	}()
	if e.dir, err = os.MkdirTemp("", "goflame-kube-test-"); err != nil {
		return nil, err
	}
	if e.net, err = testnet.New(0); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if e.c, err = testcluster.Start(ctx, e.dir); err != nil {
		return nil, err
	}
	if e.node, err = testnode.Start(ctx, e.c.Admin, "goflame-node", e.net, e.log.printf); err != nil {
		return nil, err
	}
	// This process plays the parent pod: the runners dial it here.
	if err := os.Setenv("POD_IP", e.net.ParentIP); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *env) stop() {
	if e.node != nil {
		e.node.Stop()
	}
	if e.c != nil {
		e.c.Stop()
	}
	if e.net != nil {
		_ = e.net.Close()
	}
	if e.dir != "" {
		_ = os.RemoveAll(e.dir)
	}
}

// app is one test's application: a namespace with the README's RBAC, a
// parent pod (this process), and a pool whose runners are pods.
type app struct {
	e        *env
	ns       string
	parent   *corev1.Pod
	launcher *kube.Launcher
	backend  *flame.RemoteBackend
	pool     *flame.Pool
	logs     *ring
}

// appOpts change an app before its pool starts.
type appOpts struct {
	account  string                  // the launcher's service account; default "goflame", bound by deploy/rbac.yaml
	setup    func(e *env, ns string) // runs once the namespace is there
	launcher func(*kube.Launcher)    // edits the launcher
}

// newApp makes an app in a namespace of its own. At cleanup the pool is
// closed and the namespace must hold no runner pod.
func newApp(t *testing.T, cfg flame.Config, o appOpts) *app {
	t.Helper()
	e := cluster(t)
	ctx := context.Background()
	a := &app{e: e, ns: namespaceFor(t), logs: &ring{max: 60}}
	require.NoError(t, e.c.Namespace(ctx, a.ns))
	applyRBAC(t, e.c.Admin, a.ns)
	exe, err := os.Executable()
	require.NoError(t, err)
	grace := int64(5)
	a.parent, err = e.c.Admin.CoreV1().Pods(a.ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{testnode.AnnotationExternal: ""}},
		Spec: corev1.PodSpec{
			ServiceAccountName:            "goflame",
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "app", Image: "goflame.test/app:dev", Command: []string{exe},
				Ports: []corev1.ContainerPort{{Name: "flame", ContainerPort: 7300}},
				Env: []corev1.EnvVar{
					{Name: "GORACE", Value: "atexit_sleep_ms=0"},
					fieldEnv("POD_NAME", "metadata.name"),
					fieldEnv("POD_NAMESPACE", "metadata.namespace"),
					fieldEnv("POD_IP", "status.podIP"),
				},
			}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	account := o.account
	if account == "" {
		account = "goflame"
	}
	require.NoError(t, e.c.ServiceAccount(ctx, a.ns, account))
	if o.setup != nil {
		o.setup(e, a.ns)
	}
	client, err := e.c.As(ctx, a.ns, account)
	require.NoError(t, err)
	a.launcher = &kube.Launcher{Client: client, PodName: "app", Namespace: a.ns}
	if o.launcher != nil {
		o.launcher(a.launcher)
	}
	a.backend, err = kube.NewBackend(a.launcher, 0)
	require.NoError(t, err)
	a.backend.KeepAlive = 250 * time.Millisecond
	cfg.Backend = a.backend
	cfg.Logger = slog.New(slog.NewTextHandler(a.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.Name == "" {
		cfg.Name = "kube"
	}
	if cfg.BootTimeout == 0 {
		cfg.BootTimeout = time.Minute
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	a.pool, err = flame.NewPool(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		assert.NoError(t, a.pool.Close(ctx))
		assert.Empty(t, a.runnerPodNames(t), "Close left runner pods")
		if t.Failed() {
			t.Logf("the pool's log, last lines:\n%s", a.logs)
		}
		zero := int64(0) // leave nothing for the next test, whatever happened
		_ = e.c.Admin.CoreV1().Pods(a.ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	})
	return a
}

// runnerPods lists the app's runner pods, by the launcher's labels.
func (a *app) runnerPods(t *testing.T) []corev1.Pod {
	t.Helper()
	list, err := a.e.c.Admin.CoreV1().Pods(a.ns).List(context.Background(), metav1.ListOptions{LabelSelector: kube.LabelParent + "=app"})
	require.NoError(t, err)
	return list.Items
}

// runnerPodNames names the app's runner pods.
func (a *app) runnerPodNames(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, p := range a.runnerPods(t) {
		names = append(names, p.Name)
	}
	return names
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

// namespaceFor names a test's namespace after the test.
func namespaceFor(t *testing.T) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	name := strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(name) > 50 {
		name = name[:50]
	}
	return strings.Trim(name, "-") + "-" + hex.EncodeToString(b[:])
}

// applyRBAC creates deploy/rbac.yaml, the README's, in ns.
func applyRBAC(t *testing.T, admin kubernetes.Interface, ns string) {
	t.Helper()
	data, err := os.ReadFile("deploy/rbac.yaml")
	require.NoError(t, err)
	ctx := context.Background()
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var meta metav1.TypeMeta
		require.NoError(t, yaml.Unmarshal([]byte(doc), &meta))
		switch meta.Kind {
		case "ServiceAccount":
			var sa corev1.ServiceAccount
			require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &sa))
			_, err = admin.CoreV1().ServiceAccounts(ns).Create(ctx, &sa, metav1.CreateOptions{})
		case "Role":
			var r rbacv1.Role
			require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &r))
			_, err = admin.RbacV1().Roles(ns).Create(ctx, &r, metav1.CreateOptions{})
		case "RoleBinding":
			var rb rbacv1.RoleBinding
			require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &rb))
			for i := range rb.Subjects {
				rb.Subjects[i].Namespace = ns
			}
			_, err = admin.RbacV1().RoleBindings(ns).Create(ctx, &rb, metav1.CreateOptions{})
		default:
			require.FailNow(t, "deploy/rbac.yaml: unexpected kind", meta.Kind)
		}
		require.NoError(t, err, meta.Kind)
	}
}

// ring keeps the last lines written to it.
type ring struct {
	mu    sync.Mutex
	max   int
	lines []string
	part  []byte
}

func (r *ring) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.part = append(r.part, b...)
	for {
		i := bytes.IndexByte(r.part, '\n')
		if i < 0 {
			break
		}
		r.add(string(r.part[:i]))
		r.part = r.part[i+1:]
	}
	return len(b), nil
}

func (r *ring) printf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.add(time.Now().Format("15:04:05.000 ") + fmt.Sprintf(format, args...))
}

func (r *ring) add(line string) {
	r.lines = append(r.lines, line)
	if len(r.lines) > r.max {
		r.lines = r.lines[len(r.lines)-r.max:]
	}
}

func (r *ring) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}
