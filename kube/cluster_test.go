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
	"github.com/goflame/goflame/internal/kubetest"
	"github.com/goflame/goflame/internal/kubetest/testcluster"
	"github.com/goflame/goflame/kube"
)

func TestMain(m *testing.M) {
	flame.Main() // a runner pod is this test binary: it serves and exits here
	if os.Getenv("GOFLAME_NO_KUBE") != "1" {
		// Before m.Run, outside the test timeout: the first build takes
		// minutes. A failure is reported by the first test that needs it.
		_ = testcluster.Build()
	}
	code := m.Run()
	if theEnv != nil {
		theEnv.Stop()
	}
	os.Exit(code)
}

// env is the control plane, the node that runs its pods, and the network
// the pods live on, started once by the first test that needs it; log has
// the node's and the pods' output.
type env struct {
	*kubetest.Env
	log *ring
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
	envOnce.Do(func() {
		log := &ring{max: 60}
		var e *kubetest.Env
		if e, envErr = kubetest.Start(log.printf); envErr == nil {
			theEnv = &env{Env: e, log: log}
		}
	})
	require.NoError(t, envErr)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the node's log, last lines:\n%s", theEnv.log)
		}
	})
	return theEnv
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
	parent   func(*corev1.Pod)       // edits the parent pod
}

// newApp makes an app in a namespace of its own. At cleanup the pool is
// closed and the namespace must hold no runner pod.
func newApp(t *testing.T, cfg flame.Config, o appOpts) *app {
	t.Helper()
	e := cluster(t)
	ctx := context.Background()
	a := &app{e: e, ns: namespaceFor(t), logs: &ring{max: 60}}
	require.NoError(t, e.Cluster.Namespace(ctx, a.ns))
	applyRBAC(t, e.Cluster.Admin, a.ns)
	if o.setup != nil {
		o.setup(e, a.ns)
	}
	var err error
	a.parent, err = e.ParentPod(ctx, a.ns, "app", "goflame", o.parent)
	require.NoError(t, err)
	account := o.account
	if account == "" {
		account = "goflame"
	}
	require.NoError(t, e.Cluster.ServiceAccount(ctx, a.ns, account))
	client, err := e.Cluster.As(ctx, a.ns, account)
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
		_ = e.Cluster.Admin.CoreV1().Pods(a.ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	})
	return a
}

// runnerPods lists the app's runner pods, by the launcher's labels.
func (a *app) runnerPods(t *testing.T) []corev1.Pod {
	t.Helper()
	list, err := a.e.Cluster.Admin.CoreV1().Pods(a.ns).List(context.Background(), metav1.ListOptions{LabelSelector: kube.LabelParent + "=app"})
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
