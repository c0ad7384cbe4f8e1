package kube

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/goflame/goflame/flame"
)

// Labels on every runner pod.
const (
	LabelPool   = "goflame.dev/pool"   // the pool's name
	LabelRunner = "goflame.dev/runner" // the runner's ID
	LabelParent = "goflame.dev/parent" // the parent pod's name
)

// Launcher starts each runner as a pod, from the parent pod's own
// container by default: same image, command, arguments, environment,
// volumes, resources and service account, with restartPolicy Never and
// the runner's environment (FLAME_PARENT) added. The parent pod is read
// once, through the API, by the name and namespace in the POD_NAME and
// POD_NAMESPACE environment variables (the downward API; see the README's
// manifest), unless PodName and Namespace say otherwise.
//
// One watch per launcher (on the pool's label) follows its pods: a runner
// whose pod fails, is evicted or deleted by someone else is gone at once,
// with the platform's reason (OOMKilled, Evicted, the exit code,
// deleted); a pod that cannot start (unschedulable, an image that cannot
// be pulled, an invalid spec) fails its boot at once with the pod's
// message. The watch runs while the launcher has pods.
//
// The zero value is not usable: set Client (for a pod, from
// rest.InClusterConfig). Use one Launcher per pool.
type Launcher struct {
	// Client talks to the API server. Required. Its rate limits bound
	// how fast a burst creates pods (client-go's default is 5 requests a
	// second with bursts of 10; set rest.Config's QPS and Burst higher for
	// pools that boot many runners at once).
	Client kubernetes.Interface

	// PodName and Namespace name the parent pod; default the POD_NAME and
	// POD_NAMESPACE environment variables.
	PodName, Namespace string
	// RunnerNamespace is where runner pods go; default the parent's
	// namespace. In another namespace they get no owner reference (the
	// garbage collector ignores owners in other namespaces): the pool
	// deletes them itself.
	RunnerNamespace string
	// Container is the parent's container to copy; default the first.
	Container string
	// Resources, NodeSelector and Tolerations replace the copied ones when
	// set.
	Resources    *corev1.ResourceRequirements
	NodeSelector map[string]string
	Tolerations  []corev1.Toleration
	// Labels and Annotations are added to every runner pod.
	Labels, Annotations map[string]string
	// NoOwnerReference leaves the owner reference to the parent pod out:
	// by default runner pods are owned by the parent pod, so that the
	// cluster's garbage collector removes them when the parent is gone.
	NoOwnerReference bool
	// GracePeriod is how long a deleted runner pod may take to stop
	// (SIGTERM, then SIGKILL); default: the copied pod's own
	// (terminationGracePeriodSeconds, 30 s by default).
	GracePeriod *time.Duration
	// AwaitScaleUp leaves a pod that the scheduler cannot place pending
	// until the boot times out, for clusters whose node autoscaler adds a
	// node for pending pods. By default such a pod fails its boot at once,
	// with the scheduler's message.
	AwaitScaleUp bool
	// MountServiceAccountToken gives runner pods the service account's API
	// token. By default they run as the parent's service account (for
	// workload identity and image pull secrets) without its token: runners
	// never talk to the API, and the account may create pods.
	MountServiceAccountToken bool
	// EditPod, if set, edits each runner pod before it is created. It may
	// change anything but the namespace and the goflame.dev/parent label.
	EditPod func(*corev1.Pod)

	parentMu sync.Mutex
	parent   *corev1.Pod // read once, on the first launch that could

	mu      sync.Mutex
	watch   *podWatch // while pods are out
	running int       // pods created and not yet removed
}

// Launch implements flame.Launcher: it creates the runner's pod.
func (l *Launcher) Launch(ctx context.Context, spec flame.LaunchSpec) (flame.Instance, error) {
	if l.Client == nil {
		return nil, fmt.Errorf("%w: kube.Launcher.Client is required", flame.ErrBootFailed)
	}
	parent, err := l.parentPod(ctx)
	if err != nil {
		return nil, err
	}
	pod, err := l.runnerPod(parent, spec)
	if err != nil {
		return nil, err
	}
	w, err := l.acquire(ctx, parent)
	if err != nil {
		return nil, err
	}
	created, err := l.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		l.release()
		return nil, apiError(err, "create", "pods", pod.Namespace)
	}
	inst := w.track(created, l)
	return inst, nil
}

// parentPod reads the parent pod, once it can: a failure is not kept, so
// that a later launch tries again.
func (l *Launcher) parentPod(ctx context.Context) (*corev1.Pod, error) {
	l.parentMu.Lock()
	defer l.parentMu.Unlock()
	if l.parent != nil {
		return l.parent, nil
	}
	name, ns := l.PodName, l.Namespace
	if name == "" {
		name = os.Getenv("POD_NAME")
	}
	if ns == "" {
		ns = os.Getenv("POD_NAMESPACE")
	}
	if name == "" || ns == "" {
		return nil, fmt.Errorf("%w: kube.Launcher: the parent pod is unknown: set POD_NAME and POD_NAMESPACE from the downward API (see the README's manifest), or Launcher.PodName and Namespace", flame.ErrBootFailed)
	}
	p, err := l.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, apiError(err, "get", "pods", ns)
	}
	l.parent = p
	return p, nil
}

// apiError explains a failed API request. A request that cannot succeed
// on a retry (RBAC, admission, an invalid pod) matches flame.ErrBootFailed;
// an exceeded quota may clear as pods end, and does not.
func apiError(err error, verb, resource, ns string) error {
	// An if chain rather than a switch: mutation testing sees the coverage
	// of statements, and a case's condition is none.
	forbidden := apierrors.IsForbidden(err)
	if forbidden && strings.Contains(err.Error(), "cannot "+verb+" resource") {
		return fmt.Errorf("%w: kube: not allowed to %s %s in namespace %q: grant the launcher's service account the Role in kube/deploy/rbac.yaml: %w",
			flame.ErrBootFailed, verb, resource, ns, err)
	}
	if forbidden && strings.Contains(err.Error(), "exceeded quota") {
		return fmt.Errorf("kube: %s %s in namespace %q: %w", verb, resource, ns, err)
	}
	if forbidden {
		return fmt.Errorf("%w: kube: %s %s in namespace %q: refused (an admission policy such as Pod Security?): %w", flame.ErrBootFailed, verb, resource, ns, err)
	}
	if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsNotFound(err) && verb == "get" {
		return fmt.Errorf("%w: kube: %s %s in namespace %q: %w", flame.ErrBootFailed, verb, resource, ns, err)
	}
	return fmt.Errorf("kube: %s %s in namespace %q: %w", verb, resource, ns, err)
}

// acquire counts a pod out, starting the watch with the first. A
// launcher that may not list its pods would never hear of them (the watch
// lists, then watches): that fails now, naming the verb.
func (l *Launcher) acquire(ctx context.Context, parent *corev1.Pod) (*podWatch, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.watch == nil {
		ns, sel := l.runnerNamespace(parent), selector(parent)
		if _, err := l.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel, Limit: 1}); err != nil {
			return nil, apiError(err, "list", "pods", ns)
		}
		l.watch = newPodWatch(l.Client, ns, sel)
	}
	l.running++
	return l.watch, nil
}

// release counts a pod back; the watch stops with the last.
func (l *Launcher) release() {
	l.mu.Lock()
	var w *podWatch
	if l.running--; l.running == 0 {
		w, l.watch = l.watch, nil
	}
	l.mu.Unlock()
	if w != nil {
		w.stop()
	}
}

func (l *Launcher) runnerNamespace(parent *corev1.Pod) string {
	if l.RunnerNamespace != "" {
		return l.RunnerNamespace
	}
	return parent.Namespace
}

// selector selects the runner pods of parent.
func selector(parent *corev1.Pod) string {
	return LabelParent + "=" + labelValue(parent.Name)
}

// labelValue makes s a valid label value (at most 63 characters of
// [A-Za-z0-9._-], starting and ending with an alphanumeric).
func labelValue(s string) string {
	var b strings.Builder
	for _, r := range s {
		if labelChar(r) {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	v := b.String()
	return strings.Trim(v[:min(len(v), 63)], "-_.")
}

// labelChar reports whether a label value may hold r.
func labelChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// dnsLabel makes s usable in a pod name.
func dnsLabel(s string) string {
	v := strings.ToLower(labelValue(s))
	v = strings.NewReplacer("_", "-", ".", "-").Replace(v)
	return strings.Trim(v[:min(len(v), 40)], "-")
}

// runnerPod is the pod of one runner, from the parent pod's container.
func (l *Launcher) runnerPod(parent *corev1.Pod, spec flame.LaunchSpec) (*corev1.Pod, error) {
	var src *corev1.Container
	for i := range parent.Spec.Containers {
		if l.Container == "" || parent.Spec.Containers[i].Name == l.Container {
			src = &parent.Spec.Containers[i]
			break
		}
	}
	if src == nil {
		return nil, fmt.Errorf("%w: kube.Launcher.Container %q: the parent pod %s has no such container", flame.ErrBootFailed, l.Container, parent.Name)
	}
	c := src.DeepCopy()
	c.Name = "runner"
	c.Ports = nil // the runner listens on nothing: it dials the parent
	c.LivenessProbe, c.ReadinessProbe, c.StartupProbe, c.Lifecycle = nil, nil, nil, nil
	env := make([]corev1.EnvVar, 0, len(c.Env)+len(spec.Env))
	for _, e := range c.Env {
		if e.Name != "FLAME_PARENT" {
			env = append(env, e)
		}
	}
	for _, kv := range spec.Env {
		k, v, _ := strings.Cut(kv, "=")
		env = append(env, corev1.EnvVar{Name: k, Value: v})
	}
	c.Env = env
	volumes, dropped := withoutAPIToken(parent.Spec.DeepCopy().Volumes)
	c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return dropped[m.Name] })
	if l.Resources != nil {
		c.Resources = *l.Resources.DeepCopy()
	}
	ns := l.runnerNamespace(parent)
	labels := map[string]string{}
	for k, v := range l.Labels {
		labels[k] = v
	}
	labels[LabelPool] = labelValue(spec.Pool)
	labels[LabelRunner] = strconv.FormatUint(spec.Runner, 10)
	labels[LabelParent] = labelValue(parent.Name)
	ps := parent.Spec.DeepCopy()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: fmt.Sprintf("%s-runner-%d-", dnsLabel(spec.Pool), spec.Runner),
			Namespace:    ns,
			Labels:       labels,
			Annotations:  l.Annotations,
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			Containers:                    []corev1.Container{*c},
			Volumes:                       volumes,
			ServiceAccountName:            ps.ServiceAccountName,
			AutomountServiceAccountToken:  &l.MountServiceAccountToken,
			SecurityContext:               ps.SecurityContext,
			ImagePullSecrets:              ps.ImagePullSecrets,
			NodeSelector:                  ps.NodeSelector,
			Tolerations:                   ps.Tolerations,
			PriorityClassName:             ps.PriorityClassName,
			TerminationGracePeriodSeconds: ps.TerminationGracePeriodSeconds,
			EnableServiceLinks:            ps.EnableServiceLinks,
		},
	}
	if l.NodeSelector != nil {
		pod.Spec.NodeSelector = l.NodeSelector
	}
	if l.Tolerations != nil {
		pod.Spec.Tolerations = l.Tolerations
	}
	if l.GracePeriod != nil {
		s := int64(l.GracePeriod.Seconds())
		pod.Spec.TerminationGracePeriodSeconds = &s
	}
	if !l.NoOwnerReference && ns == parent.Namespace {
		pod.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: "v1", Kind: "Pod", Name: parent.Name, UID: parent.UID,
		}}
	}
	if l.EditPod != nil {
		l.EditPod(pod)
		// The watch follows the pod by namespace and the parent label.
		if pod.Namespace != ns || pod.Labels[LabelParent] != labels[LabelParent] {
			return nil, fmt.Errorf("%w: kube.Launcher.EditPod changed the pod's namespace or its %s label, by which the launcher follows it", flame.ErrBootFailed, LabelParent)
		}
	}
	return pod, nil
}

// withoutAPIToken leaves out the volumes that hold the service account's
// API token, which the API server added to the parent pod (named
// kube-api-access-*, projecting a service account token): a runner pod
// gets its own, or none (MountServiceAccountToken). It returns the names
// it left out.
func withoutAPIToken(vs []corev1.Volume) ([]corev1.Volume, map[string]bool) {
	dropped := map[string]bool{}
	var out []corev1.Volume
	for _, v := range vs {
		if strings.HasPrefix(v.Name, "kube-api-access-") && v.Projected != nil && slices.ContainsFunc(v.Projected.Sources,
			func(p corev1.VolumeProjection) bool { return p.ServiceAccountToken != nil }) {
			dropped[v.Name] = true
			continue
		}
		out = append(out, v)
	}
	return out, dropped
}
