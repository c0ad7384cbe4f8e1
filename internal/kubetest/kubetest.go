// Package kubetest is what the Kubernetes tests and benchmarks share: a
// control plane on loopback (package testcluster), a stand-in kubelet
// whose pods are processes in network namespaces (package testnode), and
// a parent pod that is the calling process itself.
//
// It is a module of its own, so that neither the library nor its users
// pull in what it needs.
package kubetest

import (
	"context"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/goflame/goflame/internal/kubetest/testcluster"
	"github.com/goflame/goflame/internal/kubetest/testnode"
	"github.com/goflame/goflame/internal/testnet"
)

// Env is a running control plane with one node, whose pods live on a
// network bridged to this process.
type Env struct {
	Cluster *testcluster.Cluster
	Node    *testnode.Node
	Net     *testnet.Net
	dir     string
}

// Start starts an Env and sets POD_IP to this process's address on the
// pods' network, as the downward API would for a parent pod. logf gets
// the node's and its pods' output (nil: none).
func Start(logf func(format string, args ...any)) (_ *Env, err error) {
	if err := testnet.Available(); err != nil {
		return nil, fmt.Errorf("kubetest: the pods need network namespaces (root and iproute2): %w", err)
	}
	if err := testcluster.Build(); err != nil {
		return nil, err
	}
	e := &Env{}
	defer func() {
		if err != nil {
			e.Stop()
		}
	}()
	if e.dir, err = os.MkdirTemp("", "goflame-kube-"); err != nil {
		return nil, err
	}
	if e.Net, err = testnet.New(0); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if e.Cluster, err = testcluster.Start(ctx, e.dir); err != nil {
		return nil, err
	}
	if e.Node, err = testnode.Start(ctx, e.Cluster.Admin, "goflame-node", e.Net, logf); err != nil {
		return nil, err
	}
	if err := os.Setenv("POD_IP", e.Net.ParentIP); err != nil {
		return nil, err
	}
	return e, nil
}

// Stop stops the node (its pods' processes die), the control plane and the
// network, and removes their files.
func (e *Env) Stop() {
	if e.Node != nil {
		e.Node.Stop()
	}
	if e.Cluster != nil {
		e.Cluster.Stop()
	}
	if e.Net != nil {
		_ = e.Net.Close()
	}
	if e.dir != "" {
		_ = os.RemoveAll(e.dir)
	}
}

// ParentPod creates pod ns/name standing for this process: the node
// reports it Running at this process's address and starts nothing. Its
// one container, "app", runs this program, with the downward-API
// environment of the README's manifest (POD_NAME, POD_NAMESPACE, POD_IP)
// and a five-second termination grace period: a runner pod copied from it
// runs this program too. edit, if not nil, edits the pod before it is
// created.
func (e *Env) ParentPod(ctx context.Context, ns, name, account string, edit func(*corev1.Pod)) (*corev1.Pod, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	grace := int64(5)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{testnode.AnnotationExternal: ""}},
		Spec: corev1.PodSpec{
			ServiceAccountName:            account,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "app", Image: "goflame.test/app:dev", Command: []string{exe},
				Ports: []corev1.ContainerPort{{Name: "flame", ContainerPort: 7300}},
				Env: []corev1.EnvVar{
					{Name: "GORACE", Value: "atexit_sleep_ms=0"}, // a runner exits at once
					fieldEnv("POD_NAME", "metadata.name"),
					fieldEnv("POD_NAMESPACE", "metadata.namespace"),
					fieldEnv("POD_IP", "status.podIP"),
				},
			}},
		},
	}
	if edit != nil {
		edit(pod)
	}
	return e.Cluster.Admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}
