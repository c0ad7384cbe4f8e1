package kube

import (
	"context"
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/goflame/goflame/flame"
)

// PodGoneError is why a runner's pod is gone, as the cluster reports it:
// the ErrRunnerDown of its calls, and a failed boot, wrap it.
type PodGoneError struct {
	Pod      string
	Reason   string // OOMKilled, Evicted, Error, Completed, deleted, Unschedulable, ErrImagePull, ...
	ExitCode int32  // of the runner's container, when it ran
	Message  string // the container's termination message, or the condition's
}

func (e *PodGoneError) Error() string {
	s := fmt.Sprintf("pod %s: %s", e.Pod, e.Reason)
	if e.ExitCode != 0 {
		s += fmt.Sprintf(" (exit code %d)", e.ExitCode)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// podWatch is the one watch (an informer on the launcher's label) that
// follows a launcher's pods and tells each pod's instance what happens to
// it.
//
// Ownership: pods is guarded by mu.
type podWatch struct {
	factory informers.SharedInformerFactory
	store   cache.Store
	done    chan struct{}

	mu   sync.Mutex
	pods map[string]*instance // by pod name
}

func newPodWatch(client kubernetes.Interface, ns, selector string) *podWatch {
	w := &podWatch{done: make(chan struct{}), pods: make(map[string]*instance)}
	w.factory = informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	inf := w.factory.Core().V1().Pods().Informer()
	w.store = inf.GetStore()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.observe(obj, false) },
		UpdateFunc: func(_, obj any) { w.observe(obj, false) },
		DeleteFunc: func(obj any) { w.observe(obj, true) },
	})
	w.factory.Start(w.done)
	return w
}

// stop ends the watch and waits for its goroutines.
func (w *podWatch) stop() {
	close(w.done)
	w.factory.Shutdown()
}

func (w *podWatch) observe(obj any, deleted bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	w.mu.Lock()
	in := w.pods[pod.Name]
	w.mu.Unlock()
	if in != nil && in.uid == pod.UID {
		in.observe(pod, deleted)
	}
}

// track makes the instance of a pod just created, and gives it what the
// watch may have seen of the pod already.
func (w *podWatch) track(pod *corev1.Pod, l *Launcher) *instance {
	in := &instance{l: l, w: w, name: pod.Name, ns: pod.Namespace, uid: pod.UID, gone: make(chan struct{}), deleted: make(chan struct{})}
	w.mu.Lock()
	w.pods[pod.Name] = in
	w.mu.Unlock()
	if obj, ok, _ := w.store.GetByKey(pod.Namespace + "/" + pod.Name); ok {
		w.observe(obj, false)
	}
	return in
}

func (w *podWatch) forget(in *instance) {
	w.mu.Lock()
	if w.pods[in.name] == in {
		delete(w.pods, in.name)
	}
	w.mu.Unlock()
}

// instance is one runner pod.
//
// Ownership: err, removing and closed are guarded by mu; gone is closed
// (once) after err is set, deleted when the pod object is gone.
type instance struct {
	l        *Launcher
	w        *podWatch
	name, ns string
	uid      types.UID

	mu        sync.Mutex
	err       error
	removing  bool // Remove was called: a deletion is the pool's, not someone else's
	gone      chan struct{}
	deleted   chan struct{}
	isDeleted bool
	released  sync.Once
}

// observe takes what the watch saw of the pod.
func (in *instance) observe(pod *corev1.Pod, deleted bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if deleted {
		in.goneLocked(&PodGoneError{Pod: pod.Name, Reason: "deleted"})
		if !in.isDeleted {
			in.isDeleted = true
			close(in.deleted)
		}
		return
	}
	if err := podEnded(pod, in.l != nil && in.l.AwaitScaleUp); err != nil {
		in.goneLocked(err)
		return
	}
	if pod.DeletionTimestamp != nil && !in.removing {
		msg := "deleted by someone else"
		if c := disruption(pod); c != nil { // an eviction, a preemption, a tainted node
			msg += " (" + c.Reason + ": " + c.Message + ")"
		}
		in.goneLocked(&PodGoneError{Pod: pod.Name, Reason: "deleted", Message: msg})
	}
}

// goneLocked records why the pod is gone, the first time. Requires mu.
func (in *instance) goneLocked(err error) {
	if in.err != nil {
		return
	}
	in.err = err
	close(in.gone)
}

// podEnded says why a pod has ended or cannot start, or nil while it may
// still run. A pod that cannot start is a boot failure that retrying
// cannot fix (flame.ErrBootFailed); with awaitScaleUp, one that cannot be
// scheduled may yet be, once a node is added.
func podEnded(pod *corev1.Pod, awaitScaleUp bool) error {
	switch pod.Status.Phase {
	case corev1.PodFailed, corev1.PodSucceeded:
		e := &PodGoneError{Pod: pod.Name, Reason: pod.Status.Reason, Message: pod.Status.Message}
		for _, cs := range pod.Status.ContainerStatuses {
			if t := cs.State.Terminated; t != nil {
				if e.Reason == "" || e.Reason == "Error" {
					e.Reason = t.Reason
				}
				e.ExitCode = t.ExitCode
				if t.Message != "" {
					e.Message = strings.TrimSpace(t.Message)
				}
			}
		}
		if c := disruption(pod); c != nil {
			e.Message = strings.TrimSpace(strings.TrimSpace(e.Message) + " (" + c.Reason + ": " + c.Message + ")")
		}
		if e.Reason == "" {
			e.Reason = string(pod.Status.Phase)
		}
		return e
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable && !awaitScaleUp {
			return fmt.Errorf("%w: %w", flame.ErrBootFailed, &PodGoneError{Pod: pod.Name, Reason: c.Reason, Message: c.Message})
		}
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && cannotStart[w.Reason] {
			return fmt.Errorf("%w: %w", flame.ErrBootFailed, &PodGoneError{Pod: pod.Name, Reason: w.Reason, Message: w.Message})
		}
	}
	return nil
}

// disruption is the pod's DisruptionTarget condition, which says who is
// taking the pod away (EvictionByEvictionAPI, PreemptionByScheduler,
// DeletionByTaintManager, TerminationByKubelet, ...), or nil.
func disruption(pod *corev1.Pod) *corev1.PodCondition {
	for i, c := range pod.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// cannotStart are the waiting reasons of a container that will not start
// by itself.
var cannotStart = map[string]bool{
	"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true,
	"CreateContainerConfigError": true, "CreateContainerError": true, "RunContainerError": true,
}

// Gone implements flame.Instance.
func (in *instance) Gone() <-chan struct{} { return in.gone }

// Err implements flame.Instance.
func (in *instance) Err() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.err
}

// Remove implements flame.Instance: it deletes the pod (with the
// launcher's grace period) and waits until the pod is gone from the API
// or ctx is done.
func (in *instance) Remove(ctx context.Context) error {
	in.mu.Lock()
	in.removing = true
	in.mu.Unlock()
	defer in.released.Do(func() {
		in.w.forget(in)
		in.l.release()
	})
	opts := metav1.DeleteOptions{}
	if in.l.GracePeriod != nil {
		s := int64(in.l.GracePeriod.Seconds())
		opts.GracePeriodSeconds = &s
	}
	err := in.l.Client.CoreV1().Pods(in.ns).Delete(ctx, in.name, opts)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return apiError(err, "delete", "pods", in.ns)
	}
	select {
	case <-in.deleted:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kube: pod %s not gone yet: %w", in.name, ctx.Err())
	}
}
