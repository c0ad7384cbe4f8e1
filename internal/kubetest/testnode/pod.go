package testnode

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/goflame/goflame/internal/testnet"
)

// pod is one pod bound to the node, run by its own goroutine (a kubelet's
// pod worker): the watch hands it the pod's latest state through update.
//
// Ownership: latest, removed, oom and cmd are guarded by mu; the rest
// belongs to run.
type pod struct {
	n        *Node
	ns, name string
	uid      types.UID
	kick     chan struct{} // a new state is in latest
	exited   chan struct{} // closed when the process has exited

	mu      sync.Mutex
	latest  *corev1.Pod
	removed bool // gone from the API
	oom     bool // OOMKill killed it
	cmd     *exec.Cmd
	waitErr error // of the process, once exited is closed
}

func (p *pod) update(kp *corev1.Pod, removed bool) {
	p.mu.Lock()
	p.latest = kp
	p.removed = p.removed || removed
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *pod) snapshot() (*corev1.Pod, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.latest, p.removed
}

func (p *pod) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	select {
	case <-p.exited:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

// run is the pod's life on the node: start it once, report its process's
// exit, and on a graceful deletion SIGTERM, SIGKILL after the grace
// period, then complete the deletion.
func (p *pod) run() {
	defer p.n.wg.Done()
	var (
		started, terminating bool
		host                 *testnet.Host
		exited               <-chan struct{} // the process's, while it runs
		grace                <-chan time.Time
		startedAt            metav1.Time
	)
	defer func() {
		if host != nil {
			if err := p.n.net.Remove(*host); err != nil {
				p.n.logf("testnode: pod %s/%s: removing its network namespace: %v", p.ns, p.name, err)
			}
		}
	}()
	for {
		select {
		case <-p.kick:
		case <-exited:
			exited, grace = nil, nil
			p.reportExit(startedAt)
			if terminating {
				p.finishDeletion()
				return
			}
			continue
		case <-grace:
			grace = nil
			p.signal(syscall.SIGKILL)
			continue
		case <-p.n.stop:
			if exited != nil {
				p.signal(syscall.SIGKILL)
				<-exited
			}
			return
		}
		kp, removed := p.snapshot()
		if removed { // deleted at once (grace period 0): a kubelet kills what is left
			if exited != nil {
				p.signal(syscall.SIGKILL)
				<-exited
			}
			return
		}
		if !started {
			started = true
			host, exited, startedAt = p.start(kp)
		}
		if kp.DeletionTimestamp != nil && !terminating {
			terminating = true
			if exited == nil {
				p.finishDeletion()
				return
			}
			p.signal(syscall.SIGTERM)
			g := time.Duration(0)
			if s := kp.DeletionGracePeriodSeconds; s != nil {
				g = time.Duration(*s) * time.Second
			}
			grace = time.After(g)
		}
	}
}

// start starts the pod as the annotations say: a process in a new host
// of the Net, the Net's parent (external), nothing (pending), or an image
// pull error. It returns the host and the process's exit channel, if it
// started one.
func (p *pod) start(kp *corev1.Pod) (*testnet.Host, <-chan struct{}, metav1.Time) {
	now := metav1.Now()
	if _, ok := kp.Annotations[AnnotationExternal]; ok {
		p.setStatus(running(kp, p.n.net.ParentIP, now, ""))
		return nil, nil, now
	}
	if _, ok := kp.Annotations[AnnotationPending]; ok {
		return nil, nil, now
	}
	if msg, ok := kp.Annotations[AnnotationPullError]; ok {
		p.setStatus(waiting(kp, "ErrImagePull", msg))
		return nil, nil, now
	}
	c := kp.Spec.Containers[0]
	if len(c.Command) == 0 {
		p.setStatus(waiting(kp, "CreateContainerError", "testnode runs no images: the container needs a command, a path on this machine"))
		return nil, nil, now
	}
	h, err := p.n.net.Add()
	if err != nil {
		p.setStatus(waiting(kp, "CreateContainerError", "testnode: network namespace: "+err.Error()))
		return nil, nil, now
	}
	env, err := containerEnv(kp, &c, h.IP)
	if err != nil {
		p.setStatus(waiting(kp, "CreateContainerConfigError", err.Error()))
		return &h, nil, now
	}
	path, args := h.Command(c.Command[0], append(c.Command[1:], c.Args...)...)
	cmd := exec.Command(path, args...)
	cmd.Env = env
	out := &lineWriter{logf: p.n.logf, prefix: fmt.Sprintf("pod %s/%s: ", p.ns, p.name)}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, and it dies with this process: a test killed
	// midway leaves no runner behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		p.setStatus(waiting(kp, "RunContainerError", err.Error()))
		return &h, nil, now
	}
	p.n.live.Add(1)
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		p.n.live.Add(-1)
		close(p.exited)
	}()
	p.n.logf("testnode: pod %s/%s started: pid %d, IP %s", p.ns, p.name, cmd.Process.Pid, h.IP)
	p.setStatus(running(kp, h.IP, now, "testnode://"+strconv.Itoa(cmd.Process.Pid)))
	return &h, p.exited, now
}

func (p *pod) signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	pid := cmd.Process.Pid
	if sig == syscall.SIGKILL {
		pid = -pid // the whole group: nothing of the container survives
	}
	_ = syscall.Kill(pid, sig)
}

func (p *pod) oomKill() error {
	p.mu.Lock()
	if p.cmd == nil {
		p.mu.Unlock()
		return fmt.Errorf("testnode: pod %s/%s runs no process", p.ns, p.name)
	}
	p.oom = true
	p.mu.Unlock()
	p.signal(syscall.SIGKILL)
	return nil
}

// reportExit reports the process's end: Succeeded or Failed, with the
// container's exit code and reason (OOMKilled, Completed, Error).
func (p *pod) reportExit(startedAt metav1.Time) {
	p.mu.Lock()
	waitErr, oom, kp, cmd := p.waitErr, p.oom, p.latest, p.cmd
	p.mu.Unlock()
	code := int32(0)
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int32(ws.Signal())
		} else {
			code = int32(ee.ExitCode())
		}
	}
	reason, phase := "Completed", corev1.PodSucceeded
	switch {
	case oom:
		reason, phase, code = "OOMKilled", corev1.PodFailed, 137
	case code != 0:
		reason, phase = "Error", corev1.PodFailed
	}
	p.n.logf("testnode: pod %s/%s exited: %s, code %d", p.ns, p.name, reason, code)
	c := kp.Spec.Containers[0]
	now := metav1.Now()
	p.setStatus(corev1.PodStatus{
		Phase: phase, PodIP: kp.Status.PodIP, PodIPs: kp.Status.PodIPs, HostIP: "127.0.0.1", StartTime: &startedAt,
		Conditions: conditions(corev1.ConditionFalse, "PodCompleted"),
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: c.Name, Image: c.Image, ImageID: c.Image, ContainerID: "testnode://" + strconv.Itoa(cmd.Process.Pid),
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: code, Reason: reason, StartedAt: startedAt, FinishedAt: now,
				ContainerID: "testnode://" + strconv.Itoa(cmd.Process.Pid),
			}},
		}},
	})
}

// finishDeletion completes a graceful deletion, as a kubelet does once
// the pod's containers are gone.
func (p *pod) finishDeletion() {
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	zero := int64(0)
	err := p.n.client.CoreV1().Pods(p.ns).Delete(ctx, p.name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &p.uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		p.n.logf("testnode: pod %s/%s: completing its deletion: %v", p.ns, p.name, err)
	}
}

// setStatus writes the pod's status, on the latest version of the pod.
func (p *pod) setStatus(st corev1.PodStatus) {
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	pods := p.n.client.CoreV1().Pods(p.ns)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := pods.Get(ctx, p.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != p.uid {
			return apierrors.NewNotFound(corev1.Resource("pods"), p.name)
		}
		cur.Status = st
		_, err = pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) {
		p.n.logf("testnode: pod %s/%s: status: %v", p.ns, p.name, err)
	}
}

func running(kp *corev1.Pod, ip string, at metav1.Time, containerID string) corev1.PodStatus {
	c := kp.Spec.Containers[0]
	yes := true
	return corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, HostIP: "127.0.0.1",
		HostIPs: []corev1.HostIP{{IP: "127.0.0.1"}}, StartTime: &at,
		Conditions: conditions(corev1.ConditionTrue, ""),
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: c.Name, Image: c.Image, ImageID: c.Image, ContainerID: containerID, Ready: true, Started: &yes,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at}},
		}},
	}
}

func waiting(kp *corev1.Pod, reason, msg string) corev1.PodStatus {
	c := kp.Spec.Containers[0]
	return corev1.PodStatus{
		Phase: corev1.PodPending, HostIP: "127.0.0.1",
		Conditions: conditions(corev1.ConditionFalse, "ContainersNotReady"),
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: c.Name, Image: c.Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}},
		}},
	}
}

func conditions(ready corev1.ConditionStatus, reason string) []corev1.PodCondition {
	now := metav1.Now()
	return []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: ready, Reason: reason, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: ready, Reason: reason, LastTransitionTime: now},
	}
}

// lineWriter passes a process's output on line by line.
type lineWriter struct {
	logf   func(string, ...any)
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			break
		}
		w.logf("%s%s", w.prefix, w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // a line that never ends
		w.logf("%s%s", w.prefix, w.buf)
		w.buf = w.buf[:0]
	}
	return len(b), nil
}
