package kube

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/goflame/goflame/flame"
)

// These tests drive the launcher against client-go's fake clientset, for
// the API's answers a real cluster gives only when something is wrong.

var podsResource = schema.GroupResource{Resource: "pods"}

// An API error says what was refused, where, and whether retrying can
// help: RBAC, admission and invalid requests cannot be fixed by a retry
// (ErrBootFailed); a quota may clear as pods end, and a server error may
// pass.
func TestAPIErrorSaysWhetherRetryingCanHelp(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		verb     string
		bootFail bool
		says     string
	}{
		{"rbac", apierrors.NewForbidden(podsResource, "", errors.New(`User "system:serviceaccount:apps:goflame" cannot create resource "pods" in API group "" in the namespace "apps"`)),
			"create", true, "not allowed to create pods"},
		{"quota", apierrors.NewForbidden(podsResource, "r", errors.New("exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2")),
			"create", false, "exceeded quota"},
		{"admission", apierrors.NewForbidden(podsResource, "r", errors.New(`violates PodSecurity "restricted:latest"`)),
			"create", true, "admission policy"},
		{"invalid", apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, "r", field.ErrorList{field.Required(field.NewPath("spec"), "")}),
			"create", true, "is invalid"},
		{"bad request", apierrors.NewBadRequest("no"), "create", true, "no"},
		{"parent not found", apierrors.NewNotFound(podsResource, "web"), "get", true, "not found"},
		{"gone while deleting", apierrors.NewNotFound(podsResource, "r"), "delete", false, "not found"},
		{"server", apierrors.NewServiceUnavailable("busy"), "create", false, "busy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := apiError(tc.err, tc.verb, "pods", "apps")
			assert.ErrorIs(t, err, tc.err, "the API's error is kept")
			assert.ErrorContains(t, err, tc.says)
			assert.ErrorContains(t, err, `namespace "apps"`)
			if tc.bootFail {
				assert.ErrorIs(t, err, flame.ErrBootFailed)
			} else {
				assert.NotErrorIs(t, err, flame.ErrBootFailed)
			}
		})
	}
	assert.ErrorContains(t, apiError(apierrors.NewForbidden(podsResource, "", errors.New("cannot create resource")), "create", "pods", "apps"),
		"kube/deploy/rbac.yaml", "a refused verb names the Role to grant")
}

// A launcher without a client fails every boot, saying so.
func TestLaunchWithoutClientIsBootFailed(t *testing.T) {
	_, err := (&Launcher{}).Launch(context.Background(), spec)
	assert.ErrorIs(t, err, flame.ErrBootFailed)
	assert.ErrorContains(t, err, "Client is required")
}

// The parent pod is found from POD_NAME and POD_NAMESPACE when the
// launcher does not name it; without either, the boot fails and says how
// to set them.
func TestParentPodFromTheDownwardAPI(t *testing.T) {
	parent := parentPod()
	l := &Launcher{Client: fake.NewClientset(parent)}
	t.Setenv("POD_NAME", "")
	t.Setenv("POD_NAMESPACE", parent.Namespace)
	_, err := l.parentPod(context.Background())
	assert.ErrorIs(t, err, flame.ErrBootFailed)
	assert.ErrorContains(t, err, "POD_NAME and POD_NAMESPACE")

	t.Setenv("POD_NAME", parent.Name)
	t.Setenv("POD_NAMESPACE", "")
	_, err = l.parentPod(context.Background())
	assert.ErrorIs(t, err, flame.ErrBootFailed, "a name without a namespace is not enough")

	t.Setenv("POD_NAMESPACE", parent.Namespace)
	got, err := l.parentPod(context.Background())
	require.NoError(t, err)
	assert.Equal(t, parent.UID, got.UID)

	t.Setenv("POD_NAME", "web-other")
	got, err = l.parentPod(context.Background())
	require.NoError(t, err)
	assert.Equal(t, parent.UID, got.UID, "the parent is read once")
}

// fakeLauncher is a launcher on a fake clientset holding the parent pod.
func fakeLauncher(t *testing.T) (*Launcher, *fake.Clientset) {
	parent := parentPod()
	client := fake.NewClientset(parent)
	var made int
	client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if pod := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod); pod.Name == "" {
			made++ // the fake has no generateName
			pod.Name = pod.GenerateName + strconv.Itoa(made)
		}
		return false, nil, nil
	})
	l := &Launcher{Client: client, PodName: parent.Name, Namespace: parent.Namespace}
	t.Cleanup(func() {
		l.mu.Lock()
		w := l.watch
		l.mu.Unlock()
		if w != nil {
			w.stop()
		}
	})
	return l, client
}

// A pod the API refuses to create gives the watch back: the launcher
// watches nothing once it has no pod out.
func TestLaunchRefusedReleasesTheWatch(t *testing.T) {
	l, client := fakeLauncher(t)
	refusal := apierrors.NewForbidden(podsResource, "", errors.New(`violates PodSecurity "restricted:latest"`))
	client.PrependReactor("create", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, refusal
	})
	_, err := l.Launch(context.Background(), spec)
	assert.ErrorIs(t, err, flame.ErrBootFailed)
	assert.ErrorIs(t, err, refusal)
	l.mu.Lock()
	defer l.mu.Unlock()
	assert.Zero(t, l.running, "the refused pod is still counted out")
	assert.Nil(t, l.watch, "the watch outlives the last pod")
}

// A launcher that may not list pods fails its first launch, naming the
// verb, and counts nothing out.
func TestLaunchWithoutListIsBootFailed(t *testing.T) {
	l, client := fakeLauncher(t)
	client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(podsResource, "", errors.New(`User "x" cannot list resource "pods"`))
	})
	_, err := l.Launch(context.Background(), spec)
	assert.ErrorIs(t, err, flame.ErrBootFailed)
	assert.ErrorContains(t, err, "not allowed to list pods")
	l.mu.Lock()
	defer l.mu.Unlock()
	assert.Zero(t, l.running)
	assert.Nil(t, l.watch)
}

// launched launches one runner pod on a fake clientset, and waits until the
// watch has seen it: the fake's watch drops what happens before it starts.
func launched(t *testing.T, l *Launcher) *instance {
	inst, err := l.Launch(context.Background(), spec)
	require.NoError(t, err)
	in := inst.(*instance)
	require.Eventually(t, func() bool {
		_, ok, _ := in.w.store.GetByKey(in.ns + "/" + in.name)
		return ok
	}, 30*time.Second, 5*time.Millisecond, "the watch never saw the pod")
	return in
}

// Remove deletes the pod with the launcher's grace period, and returns
// once the pod is gone from the API.
func TestRemoveDeletesWithTheGracePeriod(t *testing.T) {
	l, client := fakeLauncher(t)
	grace := 7 * time.Second
	l.GracePeriod = &grace
	in := launched(t, l)
	var opts metav1.DeleteOptions
	client.PrependReactor("delete", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		opts = a.(k8stesting.DeleteActionImpl).DeleteOptions
		return false, nil, nil // the tracker deletes it
	})
	other := launched(t, l)
	require.NoError(t, in.Remove(context.Background()))
	assert.NotContains(t, in.w.pods, in.name, "the watch still follows a removed pod")
	assert.Contains(t, in.w.pods, other.name, "removing one pod stopped following another")
	require.NotNil(t, opts.GracePeriodSeconds)
	assert.Equal(t, int64(7), *opts.GracePeriodSeconds)
	l.mu.Lock()
	defer l.mu.Unlock()
	assert.Equal(t, 1, l.running, "a removed pod is still counted out")
}

// A pod already gone is removed; a refused deletion says so; a deletion
// the API accepted but has not finished is waited for until ctx ends.
func TestRemoveAnswers(t *testing.T) {
	t.Run("already gone", func(t *testing.T) {
		l, client := fakeLauncher(t)
		in := launched(t, l)
		require.NoError(t, client.CoreV1().Pods(in.ns).Delete(context.Background(), in.name, metav1.DeleteOptions{}))
		assert.NoError(t, in.Remove(context.Background()))
	})
	t.Run("refused", func(t *testing.T) {
		l, client := fakeLauncher(t)
		in := launched(t, l)
		client.PrependReactor("delete", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(podsResource, in.name, errors.New(`User "x" cannot delete resource "pods"`))
		})
		err := in.Remove(context.Background())
		assert.ErrorContains(t, err, "not allowed to delete pods")
		l.mu.Lock()
		defer l.mu.Unlock()
		assert.Zero(t, l.running, "a pod the pool gave up on is still counted out")
	})
	t.Run("not gone yet", func(t *testing.T) {
		l, client := fakeLauncher(t)
		in := launched(t, l)
		client.PrependReactor("delete", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, nil // accepted; the pod lingers (a finalizer, a slow kubelet)
		})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := in.Remove(ctx)
		assert.ErrorIs(t, err, context.Canceled)
		assert.ErrorContains(t, err, "not gone yet")
	})
}

// A deletion the watch missed the end of (it reconnected after the pod
// went) still tells the pod's instance; objects that are not pods are
// ignored.
func TestWatchTakesDeletionsItMissed(t *testing.T) {
	l, _ := fakeLauncher(t)
	in := launched(t, l)
	w := l.watch
	w.observe("not a pod", true)
	w.observe(cache.DeletedFinalStateUnknown{Key: in.ns + "/" + in.name, Obj: "not a pod either"}, true)
	assert.NoError(t, in.Err())
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: in.name, Namespace: in.ns, UID: in.uid}}
	w.observe(cache.DeletedFinalStateUnknown{Key: in.ns + "/" + in.name, Obj: pod}, true)
	var gone *PodGoneError
	require.ErrorAs(t, in.Err(), &gone)
	assert.Equal(t, "deleted", gone.Reason)
	select {
	case <-in.Gone():
	default:
		assert.Fail(t, "Gone is not closed")
	}
}

// A failed pod that the cluster took away (an eviction, a preemption)
// says why beside the container's own message.
func TestPodEndedNamesTheDisruption(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Status: corev1.PodStatus{
		Phase: corev1.PodFailed, Reason: "Evicted", Message: "low on memory ",
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue},
			{Type: corev1.DisruptionTarget, Status: corev1.ConditionFalse, Reason: "Stale"},
			{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "TerminationByKubelet", Message: "node pressure"},
		},
	}}
	var gone *PodGoneError
	require.ErrorAs(t, podEnded(pod, false), &gone)
	assert.Equal(t, "Evicted", gone.Reason)
	assert.Equal(t, "low on memory (TerminationByKubelet: node pressure)", gone.Message)
}

// A PodGoneError's text gives the exit code and the message only when
// there is one.
func TestPodGoneErrorText(t *testing.T) {
	assert.Equal(t, "pod p: deleted", (&PodGoneError{Pod: "p", Reason: "deleted"}).Error())
	assert.Equal(t, "pod p: OOMKilled (exit code 137)", (&PodGoneError{Pod: "p", Reason: "OOMKilled", ExitCode: 137}).Error())
	assert.Equal(t, "pod p: Evicted: low on memory", (&PodGoneError{Pod: "p", Reason: "Evicted", Message: "low on memory"}).Error())
	assert.Equal(t, "pod p: Error (exit code 3): bye", (&PodGoneError{Pod: "p", Reason: "Error", ExitCode: 3, Message: "bye"}).Error())
}

// A failed pod's own reason wins over its container's, unless it is the
// generic "Error"; the container's termination message replaces the
// pod's, when it has one.
func TestPodEndedPrefersTheSpecificReason(t *testing.T) {
	failed := func(reason, message string, term corev1.ContainerStateTerminated) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Status: corev1.PodStatus{
			Phase: corev1.PodFailed, Reason: reason, Message: message,
			ContainerStatuses: []corev1.ContainerStatus{
				{State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}, // a sidecar
				{State: corev1.ContainerState{Terminated: &term}},
			},
		}}
	}
	for _, tc := range []struct {
		name            string
		pod             *corev1.Pod
		reason, message string
	}{
		{"evicted", failed("Evicted", "low on memory", corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 137}), "Evicted", "low on memory"},
		{"generic", failed("Error", "", corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137}), "OOMKilled", ""},
		{"message", failed("", "", corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 2, Message: " panic: boom\n"}), "Error", "panic: boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gone *PodGoneError
			require.ErrorAs(t, podEnded(tc.pod, false), &gone)
			assert.Equal(t, tc.reason, gone.Reason)
			assert.Equal(t, tc.message, gone.Message)
			assert.Equal(t, int32(tc.pod.Status.ContainerStatuses[1].State.Terminated.ExitCode), gone.ExitCode)
		})
	}
}
