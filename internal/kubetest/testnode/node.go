// Package testnode plays a kubelet for tests against a control plane
// with no kubelet and no container runtime: it registers a Node and runs
// each pod bound to it as a local process, in a network namespace of its
// own with its own pod IP, and reports the pod's status as a kubelet
// would.
//
// What it does not do: images (a container's command is a path on this
// machine), volumes, probes, restarts (pods here are restartPolicy
// Never), envFrom and env from ConfigMaps or Secrets (such a pod waits
// with CreateContainerConfigError). Annotations on a pod ask it for what
// a real node does only by accident: see AnnotationExternal,
// AnnotationPending and AnnotationPullError, and Node.OOMKill.
package testnode

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/goflame/goflame/internal/testnet"
)

// Annotations a pod may carry for this node.
const (
	// AnnotationExternal marks a pod that is this test process itself (a
	// parent pod): it is reported Running with the Net's parent address as
	// its IP, and nothing is started for it.
	AnnotationExternal = "testnode.goflame.dev/external"
	// AnnotationPending leaves a pod Pending: it is never started.
	AnnotationPending = "testnode.goflame.dev/pending"
	// AnnotationPullError makes the pod's image fail to pull
	// (ErrImagePull), with the annotation's value as the message.
	AnnotationPullError = "testnode.goflame.dev/image-pull-error"
)

// Node is the stand-in kubelet. Its pods' processes run in hosts of net.
//
// Ownership: pods is guarded by mu; each pod's process and state belong to
// that pod's goroutine.
type Node struct {
	Name   string
	client kubernetes.Interface
	net    *testnet.Net
	logf   func(format string, args ...any)

	factory informers.SharedInformerFactory
	stop    chan struct{}
	wg      sync.WaitGroup

	live atomic.Int64 // processes started and not yet exited

	mu   sync.Mutex
	pods map[types.UID]*pod
}

// Start registers the Node name (schedulable, Ready, room for 110 pods)
// and runs the pods bound to it until Stop. logf, if not nil, gets the
// pods' output line by line and what the node does.
func Start(ctx context.Context, client kubernetes.Interface, name string, net *testnet.Net, logf func(format string, args ...any)) (*Node, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	n := &Node{Name: name, client: client, net: net, logf: logf, stop: make(chan struct{}), pods: make(map[types.UID]*pod)}
	if err := n.register(ctx); err != nil {
		return nil, err
	}
	n.factory = informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", name).String()
		}))
	inf := n.factory.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { n.seen(obj, false) },
		UpdateFunc: func(_, obj any) { n.seen(obj, false) },
		DeleteFunc: func(obj any) { n.seen(obj, true) },
	})
	if err != nil {
		return nil, err
	}
	n.factory.Start(n.stop)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		n.Stop()
		return nil, fmt.Errorf("testnode: the pod watch did not sync: %w", ctx.Err())
	}
	return n, nil
}

// register creates the Node and makes it schedulable: the API server
// taints a new node not-ready (only a node controller would lift that),
// and the scheduler wants allocatable resources and a Ready condition.
func (n *Node) register(ctx context.Context) error {
	nodes := n.client.CoreV1().Nodes()
	_, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: n.Name, Labels: map[string]string{"kubernetes.io/hostname": n.Name, "kubernetes.io/os": "linux"},
	}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("testnode: creating node %s: %w", n.Name, err)
	}
	if _, err := nodes.Patch(ctx, n.Name, types.MergePatchType, []byte(`{"spec":{"taints":null}}`), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("testnode: untainting node %s: %w", n.Name, err)
	}
	node, err := nodes.Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	room := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("64"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	now := metav1.Now()
	node.Status = corev1.NodeStatus{
		Capacity: room, Allocatable: room,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "testnode is ready", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: n.Name}},
	}
	if _, err := nodes.UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("testnode: node %s status: %w", n.Name, err)
	}
	return nil
}

// seen passes what the watch saw of a pod to the pod's goroutine, starting
// one for a pod new to the node.
func (n *Node) seen(obj any, deleted bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	kp, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	n.mu.Lock()
	p := n.pods[kp.UID]
	switch {
	case p == nil && deleted:
		n.mu.Unlock()
		return
	case p == nil:
		select {
		case <-n.stop:
			n.mu.Unlock()
			return
		default:
		}
		p = &pod{n: n, ns: kp.Namespace, name: kp.Name, uid: kp.UID, kick: make(chan struct{}, 1), exited: make(chan struct{})}
		n.pods[kp.UID] = p
		n.wg.Add(1)
		go p.run()
	case deleted:
		delete(n.pods, kp.UID)
	}
	n.mu.Unlock()
	p.update(kp, deleted)
}

// OOMKill kills the process of pod ns/name with SIGKILL and reports it
// OOMKilled (exit code 137), as a node does when the container exceeds
// its memory limit.
func (n *Node) OOMKill(ns, name string) error {
	p := n.find(ns, name)
	if p == nil {
		return fmt.Errorf("testnode: no pod %s/%s on node %s", ns, name, n.Name)
	}
	return p.oomKill()
}

// Pid is the process ID of pod ns/name's container, 0 when it has none
// running.
func (n *Node) Pid(ns, name string) int {
	if p := n.find(ns, name); p != nil {
		return p.pid()
	}
	return 0
}

// Running counts the pods' processes that have not exited.
func (n *Node) Running() int { return int(n.live.Load()) }

func (n *Node) find(ns, name string) *pod {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.pods {
		if p.ns == ns && p.name == name {
			return p
		}
	}
	return nil
}

// Stop kills every pod's process, waits for them, and stops the watch.
// The Node object stays.
func (n *Node) Stop() {
	n.mu.Lock()
	select {
	case <-n.stop:
	default:
		close(n.stop)
	}
	n.mu.Unlock()
	n.wg.Wait()
	n.factory.Shutdown()
}

// apiTimeout bounds each request the node makes.
const apiTimeout = 30 * time.Second
