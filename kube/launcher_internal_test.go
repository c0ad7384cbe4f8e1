package kube

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/goflame/goflame/flame"
)

func parentPod() *corev1.Pod {
	grace := int64(45)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-7d9f", Namespace: "apps", UID: "uid-1", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			ServiceAccountName:            "goflame",
			TerminationGracePeriodSeconds: &grace,
			NodeSelector:                  map[string]string{"pool": "general"},
			Volumes: []corev1.Volume{
				{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "kube-api-access-x1", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
					Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}},
				}}},
			},
			Containers: []corev1.Container{
				{Name: "sidecar", Image: "proxy:1"},
				{
					Name: "app", Image: "web:2", Command: []string{"/app"}, Args: []string{"-serve"},
					Ports:          []corev1.ContainerPort{{ContainerPort: 8080}},
					ReadinessProbe: &corev1.Probe{},
					Env: []corev1.EnvVar{
						{Name: "MODE", Value: "prod"},
						{Name: "FLAME_PARENT", Value: "stale"},
					},
					EnvFrom:      []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
					VolumeMounts: []corev1.VolumeMount{{Name: "cache", MountPath: "/cache"}, {Name: "kube-api-access-x1", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}},
					Resources:    corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}},
				},
			},
		},
	}
}

var spec = flame.LaunchSpec{Pool: "Thumbs_Pool", Runner: 7, Env: []string{"FLAME_PARENT=secret"}}

// A runner pod is the parent's chosen container, its volumes, account and
// placement, never restarted, labelled, owned by the parent, with the
// launch's environment replacing any stale FLAME_PARENT.
func TestRunnerPodCopiesTheParentsContainer(t *testing.T) {
	l := &Launcher{Container: "app"}
	pod, err := l.runnerPod(parentPod(), spec)
	require.NoError(t, err)
	assert.Equal(t, "apps", pod.Namespace)
	assert.Equal(t, "thumbs-pool-runner-7-", pod.GenerateName)
	assert.Equal(t, map[string]string{LabelPool: "Thumbs_Pool", LabelRunner: "7", LabelParent: "web-7d9f"}, pod.Labels)
	require.Len(t, pod.OwnerReferences, 1)
	assert.Equal(t, metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: "web-7d9f", UID: "uid-1"}, pod.OwnerReferences[0])
	assert.Equal(t, corev1.RestartPolicyNever, pod.Spec.RestartPolicy)
	assert.Equal(t, "goflame", pod.Spec.ServiceAccountName)
	require.NotNil(t, pod.Spec.AutomountServiceAccountToken)
	assert.False(t, *pod.Spec.AutomountServiceAccountToken, "the launcher's API token stays with the parent")
	assert.Equal(t, map[string]string{"pool": "general"}, pod.Spec.NodeSelector)
	assert.Equal(t, int64(45), *pod.Spec.TerminationGracePeriodSeconds)
	require.Len(t, pod.Spec.Volumes, 1, "the parent's API token is not copied")
	assert.Equal(t, "cache", pod.Spec.Volumes[0].Name)
	require.Len(t, pod.Spec.Containers, 1)
	c := pod.Spec.Containers[0]
	assert.Equal(t, "runner", c.Name)
	assert.Equal(t, "web:2", c.Image)
	assert.Equal(t, []string{"/app"}, c.Command)
	assert.Equal(t, []string{"-serve"}, c.Args)
	assert.Equal(t, []corev1.EnvVar{{Name: "MODE", Value: "prod"}, {Name: "FLAME_PARENT", Value: "secret"}}, c.Env)
	assert.Len(t, c.EnvFrom, 1)
	assert.Equal(t, []corev1.VolumeMount{{Name: "cache", MountPath: "/cache"}}, c.VolumeMounts)
	assert.Equal(t, "1Gi", c.Resources.Limits.Memory().String())
	assert.Empty(t, c.Ports)
	assert.Nil(t, c.ReadinessProbe)
}

// The launcher's options replace what is copied.
func TestRunnerPodOptions(t *testing.T) {
	grace := 3 * time.Second
	l := &Launcher{
		RunnerNamespace: "batch",
		Resources:       &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}},
		NodeSelector:    map[string]string{"gpu": "yes"},
		Tolerations:     []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists}},
		Labels:          map[string]string{"team": "media", LabelPool: "overridden"},
		Annotations:     map[string]string{"note": "x"},
		GracePeriod:     &grace,
		EditPod:         func(p *corev1.Pod) { p.Spec.PriorityClassName = "batch-low" },
	}
	pod, err := l.runnerPod(parentPod(), spec)
	require.NoError(t, err)
	assert.Equal(t, "batch", pod.Namespace)
	assert.Empty(t, pod.OwnerReferences, "an owner in another namespace would count as absent: the pod would be collected at once")
	assert.Equal(t, "2", pod.Spec.Containers[0].Resources.Requests.Cpu().String())
	assert.Equal(t, map[string]string{"gpu": "yes"}, pod.Spec.NodeSelector)
	assert.Len(t, pod.Spec.Tolerations, 1)
	assert.Equal(t, "media", pod.Labels["team"])
	assert.Equal(t, "Thumbs_Pool", pod.Labels[LabelPool], "the launcher's own labels win")
	assert.Equal(t, "x", pod.Annotations["note"])
	assert.Equal(t, int64(3), *pod.Spec.TerminationGracePeriodSeconds)
	assert.Equal(t, "batch-low", pod.Spec.PriorityClassName)

	l = &Launcher{NoOwnerReference: true}
	pod, err = l.runnerPod(parentPod(), spec)
	require.NoError(t, err)
	assert.Equal(t, "proxy:1", pod.Spec.Containers[0].Image, "the first container by default")
	assert.Empty(t, pod.OwnerReferences)

	_, err = (&Launcher{EditPod: func(p *corev1.Pod) { p.Namespace = "elsewhere" }}).runnerPod(parentPod(), spec)
	assert.ErrorIs(t, err, flame.ErrBootFailed, "a pod the watch would not see")

	_, err = (&Launcher{Container: "nope"}).runnerPod(parentPod(), spec)
	assert.ErrorIs(t, err, flame.ErrBootFailed)
	assert.ErrorContains(t, err, `"nope"`)
}

// What the pod's status says about the runner: still going (nil), gone
// with the platform's reason, or unable ever to start (ErrBootFailed).
func TestPodEndedReadsThePlatformsReason(t *testing.T) {
	terminated := func(reason string, code int32) corev1.PodStatus {
		return corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: reason, ExitCode: code, Message: "bye\\n"}},
		}}}
	}
	for _, tc := range []struct {
		name     string
		status   corev1.PodStatus
		reason   string
		code     int32
		bootFail bool
	}{
		{"running", corev1.PodStatus{Phase: corev1.PodRunning}, "", 0, false},
		{"pending", corev1.PodStatus{Phase: corev1.PodPending}, "", 0, false},
		{"oom", terminated("OOMKilled", 137), "OOMKilled", 137, false},
		{"error", terminated("Error", 3), "Error", 3, false},
		{"evicted", corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "low on memory"}, "Evicted", 0, false},
		{"succeeded", corev1.PodStatus{Phase: corev1.PodSucceeded}, "Succeeded", 0, false},
		{"unschedulable", corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: "0/3 nodes are available",
		}}}, "Unschedulable", 0, true},
		{"pull", corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "not found"}},
		}}}, "ImagePullBackOff", 0, true},
		{"creating", corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}},
		}}}, "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := podEnded(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Status: tc.status}, false)
			if tc.reason == "" {
				assert.NoError(t, err)
				return
			}
			var gone *PodGoneError
			require.ErrorAs(t, err, &gone)
			assert.Equal(t, tc.reason, gone.Reason)
			assert.Equal(t, tc.code, gone.ExitCode)
			assert.Equal(t, tc.bootFail, strings.Contains(err.Error(), flame.ErrBootFailed.Error()))
			if tc.bootFail {
				assert.ErrorIs(t, err, flame.ErrBootFailed)
			} else {
				assert.NotErrorIs(t, err, flame.ErrBootFailed)
			}
		})
	}
}

// With AwaitScaleUp, a pod the scheduler cannot place yet may still run:
// a node autoscaler adds a node for it.
func TestAwaitScaleUpKeepsUnschedulablePodsPending(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Status: corev1.PodStatus{Phase: corev1.PodPending,
		Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable"}}}}
	assert.ErrorIs(t, podEnded(pod, false), flame.ErrBootFailed)
	assert.NoError(t, podEnded(pod, true))
}

// Names from a pool or a pod become valid label values and pod names.
func TestLabelValueAndDNSLabel(t *testing.T) {
	assert.Equal(t, "a-b_c.d", labelValue("a/b_c.d"))
	assert.Equal(t, "x", labelValue("--x__"))
	assert.Equal(t, "A-Z-a-z-0-9", labelValue("A@Z[a`z{0/9:"), "the characters either side of each range are replaced")
	assert.Len(t, labelValue(strings.Repeat("a", 100)), 63)
	assert.Equal(t, "my-pool-v2", dnsLabel("My_Pool.v2"))
	assert.LessOrEqual(t, len(dnsLabel(strings.Repeat("Ab", 50))), 40)
}

// NewBackend needs the pod's IP and a port.
func TestNewBackendNeedsThePodIP(t *testing.T) {
	t.Setenv("POD_IP", "")
	_, err := NewBackend(&Launcher{}, 0)
	assert.ErrorIs(t, err, flame.ErrInvalidConfig)
	assert.ErrorContains(t, err, "POD_IP")
	t.Setenv("POD_IP", "10.1.2.3")
	_, err = NewBackend(&Launcher{}, 70000)
	assert.ErrorIs(t, err, flame.ErrInvalidConfig)
	be, err := NewBackend(&Launcher{}, 7300)
	require.NoError(t, err)
	assert.Equal(t, ":7300", be.Listen)
	assert.Equal(t, "10.1.2.3", be.Advertise)
	for _, port := range []int{-1, 65536} {
		_, err = NewBackend(&Launcher{}, port)
		assert.ErrorIs(t, err, flame.ErrInvalidConfig, "port %d", port)
	}
	for _, port := range []int{0, 65535} { // 0: any free port
		be, err = NewBackend(&Launcher{}, port)
		require.NoError(t, err, "port %d", port)
		assert.Equal(t, ":"+strconv.Itoa(port), be.Listen)
	}
}

// A pod deleted by someone else is gone at once, "deleted", with who took
// it away when the cluster says; the pool's own deletion is not news.
func TestInstanceSeesDeletionByOthers(t *testing.T) {
	now := metav1.Now()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", DeletionTimestamp: &now}, Status: corev1.PodStatus{
		Phase: corev1.PodRunning,
		Conditions: []corev1.PodCondition{{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
			Reason: "EvictionByEvictionAPI", Message: "Eviction API: evicting"}},
	}}
	in := &instance{name: "p", gone: make(chan struct{}), deleted: make(chan struct{})}
	in.observe(pod, false)
	var gone *PodGoneError
	require.ErrorAs(t, in.Err(), &gone)
	assert.Equal(t, "deleted", gone.Reason)
	assert.Contains(t, gone.Message, "EvictionByEvictionAPI")
	select {
	case <-in.Gone():
	default:
		assert.Fail(t, "Gone is not closed")
	}

	ours := &instance{name: "p", gone: make(chan struct{}), deleted: make(chan struct{}), removing: true}
	ours.observe(pod, false)
	assert.NoError(t, ours.Err(), "the pool's own deletion is not a runner going down")
	ours.observe(pod, true)
	assert.Error(t, ours.Err())
	select {
	case <-ours.deleted:
	default:
		assert.Fail(t, "deleted is not closed once the pod is gone")
	}
}
