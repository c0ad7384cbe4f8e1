//go:build linux

package kube_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/goflame/goflame/flame"
	"github.com/goflame/goflame/internal/kubetest/testnode"
	"github.com/goflame/goflame/kube"
)

// whereOut says where a function ran: the runner's pod (its downward-API
// environment) and process.
type whereOut struct {
	Pod, Namespace, IP string
	PID                int
}

func where() whereOut {
	return whereOut{Pod: os.Getenv("POD_NAME"), Namespace: os.Getenv("POD_NAMESPACE"), IP: os.Getenv("POD_IP"), PID: os.Getpid()}
}

var whereFn = flame.Register("kube.where", func(context.Context, struct{}) (whereOut, error) { return where(), nil })

// holdIn asks holdFn to write its pod's name to Marker, then hold its slot
// for For or until canceled.
type holdIn struct {
	Marker string
	For    time.Duration
}

var holdFn = flame.Register("kube.hold", func(ctx context.Context, in holdIn) (whereOut, error) {
	if in.Marker != "" {
		if err := os.WriteFile(in.Marker, []byte(os.Getenv("POD_NAME")), 0o644); err != nil {
			return whereOut{}, err
		}
	}
	select {
	case <-ctx.Done():
		return whereOut{}, ctx.Err()
	case <-time.After(in.For):
	}
	return where(), nil
})

// touchFn writes a file: a cast's trace.
var touchFn = flame.Register("kube.touch", func(_ context.Context, path string) (struct{}, error) {
	return struct{}{}, os.WriteFile(path, []byte(os.Getenv("POD_NAME")), 0o644)
})

// waitMarker waits for a handler to write its pod's name to path. The
// runner is another process: a file is how it says so.
func waitMarker(t *testing.T, path string) string {
	t.Helper()
	var pod string
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(path)
		pod = string(b)
		return err == nil && pod != ""
	}, time.Minute, 20*time.Millisecond, "the handler did not start")
	return pod
}

// holdInBackground starts a call that holds its slot, and returns its
// runner's pod once the handler runs, and the call's error when it
// returns.
func holdInBackground(t *testing.T, a *app) (string, <-chan error) {
	t.Helper()
	marker := filepath.Join(t.TempDir(), "started")
	errc := make(chan error, 1)
	go func() {
		_, err := holdFn.Call(context.Background(), a.pool, holdIn{Marker: marker, For: time.Hour})
		errc <- err
	}()
	return waitMarker(t, marker), errc
}

// Calls, casts and children run on runner pods copied from the parent
// pod, each with the downward-API environment of its own pod.
func TestPodRunnersServeCallsCastsAndChildren(t *testing.T) {
	a := newApp(t, flame.Config{Max: 1, MaxConcurrency: 4}, appOpts{})
	ctx := context.Background()
	out, err := whereFn.Call(ctx, a.pool, struct{}{})
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(out.Pod, "kube-runner-1-"), "the runner's POD_NAME is its own pod's: %q", out.Pod)
	assert.Equal(t, a.ns, out.Namespace)
	assert.NotEqual(t, a.e.Net.ParentIP, out.IP, "the runner has a pod IP of its own")
	assert.NotEqual(t, os.Getpid(), out.PID)

	marker := filepath.Join(t.TempDir(), "cast")
	require.NoError(t, touchFn.Cast(ctx, a.pool, marker))
	assert.Equal(t, out.Pod, waitMarker(t, marker), "the cast ran on the runner pod")

	marker = filepath.Join(t.TempDir(), "child")
	child, err := holdFn.Place(ctx, a.pool, holdIn{Marker: marker, For: time.Hour})
	require.NoError(t, err)
	assert.Equal(t, out.Pod, waitMarker(t, marker))
	child.Stop()
	assert.ErrorIs(t, child.Err(), context.Canceled)

	// The pod: one per runner, from the parent's container, owned by the
	// parent, labelled, never restarted.
	pods := a.runnerPods(t)
	require.Len(t, pods, 1)
	pod := pods[0]
	assert.Equal(t, out.Pod, pod.Name)
	assert.Equal(t, map[string]string{kube.LabelPool: "kube", kube.LabelRunner: "1", kube.LabelParent: "app"}, pod.Labels)
	require.Len(t, pod.OwnerReferences, 1)
	assert.Equal(t, a.parent.UID, pod.OwnerReferences[0].UID)
	assert.Equal(t, "Pod", pod.OwnerReferences[0].Kind)
	assert.Equal(t, corev1.RestartPolicyNever, pod.Spec.RestartPolicy)
	assert.Equal(t, "goflame", pod.Spec.ServiceAccountName)
	assert.Empty(t, pod.Spec.Volumes, "a runner pod has the launcher's API token")
	require.Len(t, pod.Spec.Containers, 1)
	c := pod.Spec.Containers[0]
	assert.Equal(t, a.parent.Spec.Containers[0].Image, c.Image)
	assert.Equal(t, a.parent.Spec.Containers[0].Command, c.Command)
	assert.Empty(t, c.Ports, "a runner listens on nothing")
	var names []string
	for _, e := range c.Env {
		names = append(names, e.Name)
	}
	assert.Equal(t, []string{"GORACE", "POD_NAME", "POD_NAMESPACE", "POD_IP", "FLAME_PARENT"}, names)
}

// A burst scales the pool from zero pods to N, and idleness back to zero:
// the pods are deleted and their processes gone.
func TestPoolScalesFromZeroToNPodsAndBack(t *testing.T) {
	const n = 4
	shrunk := make(chan flame.ShrinkEvent, n)
	a := newApp(t, flame.Config{Max: n, MaxConcurrency: 1, IdleShutdownAfter: 500 * time.Millisecond,
		OnShrink: func(ev flame.ShrinkEvent) { shrunk <- ev }}, appOpts{})
	assert.Empty(t, a.runnerPodNames(t), "no demand, no pod")
	var wg sync.WaitGroup
	pods := make(chan string, n)
	for range n {
		wg.Go(func() {
			out, err := holdFn.Call(context.Background(), a.pool, holdIn{For: time.Second})
			if assert.NoError(t, err) {
				pods <- out.Pod
			}
		})
	}
	wg.Wait()
	close(pods)
	seen := map[string]bool{}
	for p := range pods {
		seen[p] = true
	}
	assert.Len(t, seen, n, "a pod per runner served the burst")
	for range n {
		select {
		case ev := <-shrunk:
			assert.ErrorIs(t, ev.Reason, flame.ErrIdleShutdown)
		case <-time.After(time.Minute):
			require.FailNow(t, "the runners did not idle down")
		}
	}
	require.Eventually(t, func() bool { return len(a.runnerPodNames(t)) == 0 }, time.Minute, 50*time.Millisecond,
		"the idle runners' pods are not deleted")
	require.Eventually(t, func() bool { return a.e.Node.Running() == 0 }, time.Minute, 20*time.Millisecond,
		"runner processes still run")
	// The last node releases the listener once its pod's deletion is
	// confirmed, a moment after the pod leaves the API's list.
	assert.Eventually(t, func() bool { return a.backend.ListenAddr() == "" }, time.Minute, 20*time.Millisecond,
		"the listener is closed with no runner")
}

// A runner pod deleted by someone else mid-call fails the call at once
// with ErrRunnerDown, saying the pod was deleted; the pool boots another.
func TestPodDeletedMidCallIsRunnerDown(t *testing.T) {
	a := newApp(t, flame.Config{Max: 1}, appOpts{})
	pod, errc := holdInBackground(t, a)
	require.NoError(t, a.e.Cluster.Admin.CoreV1().Pods(a.ns).Delete(context.Background(), pod, metav1.DeleteOptions{}))
	var err error
	select {
	case err = <-errc:
	case <-time.After(time.Minute):
		require.FailNow(t, "the call outlived its pod")
	}
	require.ErrorIs(t, err, flame.ErrRunnerDown)
	assert.ErrorContains(t, err, "deleted")
	var gone *kube.PodGoneError
	require.ErrorAs(t, err, &gone)
	assert.Equal(t, pod, gone.Pod)
	assert.Equal(t, "deleted", gone.Reason)

	out, err := whereFn.Call(context.Background(), a.pool, struct{}{})
	require.NoError(t, err)
	assert.NotEqual(t, pod, out.Pod, "another pod serves")
}

// A runner killed for its memory fails its caller with ErrRunnerDown and
// the reason the platform gave: OOMKilled, exit code 137.
func TestOOMKilledReachesTheCaller(t *testing.T) {
	a := newApp(t, flame.Config{Max: 1}, appOpts{})
	pod, errc := holdInBackground(t, a)
	require.NoError(t, a.e.Node.OOMKill(a.ns, pod))
	err := <-errc
	require.ErrorIs(t, err, flame.ErrRunnerDown)
	assert.ErrorContains(t, err, "OOMKilled")
	var gone *kube.PodGoneError
	require.ErrorAs(t, err, &gone)
	assert.Equal(t, "OOMKilled", gone.Reason)
	assert.Equal(t, int32(137), gone.ExitCode)
}

// A pod that can never be scheduled fails its boot as soon as the
// scheduler says so, with the scheduler's reason, not after BootTimeout;
// and its pod is removed.
func TestUnschedulablePodFailsTheBootEarly(t *testing.T) {
	a := newApp(t, flame.Config{Max: 1, BootTimeout: 90 * time.Second}, appOpts{launcher: func(l *kube.Launcher) {
		l.NodeSelector = map[string]string{"goflame.dev/test": "nowhere"}
	}})
	_, err := whereFn.Call(context.Background(), a.pool, struct{}{})
	require.ErrorIs(t, err, flame.ErrBootFailed)
	var gone *kube.PodGoneError
	require.ErrorAs(t, err, &gone)
	assert.Equal(t, "Unschedulable", gone.Reason)
	assert.Contains(t, gone.Message, "node(s) didn't match Pod's node affinity/selector", "the scheduler's message")
	assert.Empty(t, a.runnerPodNames(t), "the unschedulable pod was left behind")
}

// A pod whose image cannot be pulled fails its boot at once, with the
// node's message.
func TestImagePullFailureFailsTheBootEarly(t *testing.T) {
	a := newApp(t, flame.Config{Max: 1, BootTimeout: 90 * time.Second}, appOpts{launcher: func(l *kube.Launcher) {
		l.Annotations = map[string]string{testnode.AnnotationPullError: "manifest unknown"}
	}})
	_, err := whereFn.Call(context.Background(), a.pool, struct{}{})
	require.ErrorIs(t, err, flame.ErrBootFailed)
	var gone *kube.PodGoneError
	require.ErrorAs(t, err, &gone)
	assert.Equal(t, "ErrImagePull", gone.Reason)
	assert.Equal(t, "manifest unknown", gone.Message)
	assert.Empty(t, a.runnerPodNames(t))
}

// A pod still not running when its boot times out is deleted.
func TestPodPendingAtBootTimeoutIsDeleted(t *testing.T) {
	a := newApp(t, flame.Config{Max: 1, BootTimeout: 2 * time.Second}, appOpts{launcher: func(l *kube.Launcher) {
		l.Annotations = map[string]string{testnode.AnnotationPending: ""}
	}})
	_, err := whereFn.Call(context.Background(), a.pool, struct{}{})
	require.Error(t, err)
	assert.NotErrorIs(t, err, flame.ErrBootFailed, "a pending pod may yet start: not a fail-fast error")
	// The boot removes the pod as it gives up, which may be a moment after
	// the caller heard of the timeout.
	require.Eventually(t, func() bool { return len(a.runnerPodNames(t)) == 0 }, time.Minute, 20*time.Millisecond,
		"the pending pod outlived its boot")
	assert.GreaterOrEqual(t, a.pool.Stats().BootFailures, uint64(1))
}

// When the parent pod is deleted, the cluster's garbage collector deletes
// its runner pods (their owner references), and the runner processes
// exit.
func TestParentPodDeletedRunnerPodsAreCollected(t *testing.T) {
	a := newApp(t, flame.Config{Max: 2, MaxConcurrency: 1}, appOpts{})
	var pids []int
	for i := range 2 {
		marker := filepath.Join(t.TempDir(), fmt.Sprint("child", i))
		child, err := holdFn.Place(context.Background(), a.pool, holdIn{Marker: marker, For: time.Hour})
		require.NoError(t, err)
		defer child.Stop()
		pod := waitMarker(t, marker)
		pid := a.e.Node.Pid(a.ns, pod)
		require.NotZero(t, pid)
		pids = append(pids, pid)
	}
	require.Len(t, a.runnerPodNames(t), 2)
	zero := int64(0)
	require.NoError(t, a.e.Cluster.Admin.CoreV1().Pods(a.ns).Delete(context.Background(), "app", metav1.DeleteOptions{GracePeriodSeconds: &zero}))
	require.Eventually(t, func() bool { return len(a.runnerPodNames(t)) == 0 }, time.Minute, 50*time.Millisecond,
		"the garbage collector did not delete the runner pods")
	for _, pid := range pids {
		assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "runner process %d still runs", pid)
	}
}

// Close deletes every runner pod before it returns, and their processes
// exit.
func TestCloseLeavesNoPod(t *testing.T) {
	a := newApp(t, flame.Config{Min: 2, Max: 2}, appOpts{})
	require.Eventually(t, func() bool { return a.pool.Stats().Runners == 2 }, time.Minute, 20*time.Millisecond)
	require.Len(t, a.runnerPodNames(t), 2)
	require.NoError(t, a.pool.Close(context.Background()))
	assert.Empty(t, a.runnerPodNames(t), "pods outlived Close")
	assert.Equal(t, 0, a.e.Node.Running(), "runner processes outlived Close")
}

// A launcher whose account lacks a permission of the Role fails the boot
// at once, naming the verb and the resource, and pointing at the Role.
func TestMissingRBACNamesVerbAndResource(t *testing.T) {
	for _, tc := range []struct {
		verbs []string // granted on pods
		want  string
	}{
		{nil, "not allowed to get pods"},
		{[]string{"get"}, "not allowed to list pods"},
		{[]string{"get", "list", "watch"}, "not allowed to create pods"},
	} {
		t.Run(strings.Join(append([]string{"granted"}, tc.verbs...), "-"), func(t *testing.T) {
			a := newApp(t, flame.Config{Max: 1}, appOpts{account: "partial", setup: func(e *env, ns string) {
				grantPods(t, e, ns, "partial", tc.verbs)
			}})
			waitGranted(t, a.launcher.Client, a.ns, tc.verbs)
			_, err := whereFn.Call(context.Background(), a.pool, struct{}{})
			require.ErrorIs(t, err, flame.ErrBootFailed)
			assert.ErrorContains(t, err, tc.want)
			assert.ErrorContains(t, err, "rbac.yaml")
			assert.Empty(t, a.runnerPodNames(t))
		})
	}
}

// grantPods grants service account ns/name verbs on pods.
func grantPods(t *testing.T, e *env, ns, name string, verbs []string) {
	t.Helper()
	if len(verbs) == 0 {
		return
	}
	ctx := context.Background()
	_, err := e.Cluster.Admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: verbs}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = e.Cluster.Admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// waitGranted waits until the API server's authorizer (fed by a watch of
// its own) lets client do verbs on pods in ns.
func waitGranted(t *testing.T, client kubernetes.Interface, ns string, verbs []string) {
	t.Helper()
	for _, verb := range verbs {
		require.Eventually(t, func() bool {
			r, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(), &authzv1.SelfSubjectAccessReview{
				Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{Namespace: ns, Verb: verb, Resource: "pods"}},
			}, metav1.CreateOptions{})
			return err == nil && r.Status.Allowed
		}, time.Minute, 20*time.Millisecond, "%s pods is not granted", verb)
	}
}
