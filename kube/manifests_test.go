//go:build linux

package kube_test

import (
	"context"
	"os"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/goflame/goflame/flame"
	"github.com/goflame/goflame/internal/kubetest/testnode"
)

func readDeployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	data, err := os.ReadFile("deploy/deployment.yaml")
	require.NoError(t, err)
	var d appsv1.Deployment
	require.NoError(t, yaml.UnmarshalStrict(data, &d))
	return &d
}

// The README's Deployment and NetworkPolicy are valid, as the API server
// judges them, and the Deployment gives the launcher what it needs: the
// Role's service account, the downward-API environment, and the port the
// runners dial declared.
func TestManifestsAreValidAndComplete(t *testing.T) {
	e := cluster(t)
	ctx := context.Background()
	ns := namespaceFor(t)
	require.NoError(t, e.Cluster.Namespace(ctx, ns))
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}

	d := readDeployment(t)
	_, err := e.Cluster.Admin.AppsV1().Deployments(ns).Create(ctx, d, dry)
	require.NoError(t, err)
	spec := d.Spec.Template.Spec
	assert.Equal(t, "goflame", spec.ServiceAccountName, "the account of rbac.yaml")
	c := spec.Containers[0]
	fields := map[string]string{}
	for _, ev := range c.Env {
		if ev.ValueFrom != nil && ev.ValueFrom.FieldRef != nil {
			fields[ev.Name] = ev.ValueFrom.FieldRef.FieldPath
		}
	}
	assert.Equal(t, map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "POD_IP": "status.podIP"}, fields)
	i := slices.Index(c.Args, "-flame-port")
	require.GreaterOrEqual(t, i, 0)
	assert.True(t, slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "flame" && p.ContainerPort == 7300 }))
	assert.Equal(t, "7300", c.Args[i+1])

	data, err := os.ReadFile("deploy/networkpolicy.yaml")
	require.NoError(t, err)
	var np networkingv1.NetworkPolicy
	require.NoError(t, yaml.UnmarshalStrict(data, &np))
	_, err = e.Cluster.Admin.NetworkingV1().NetworkPolicies(ns).Create(ctx, &np, dry)
	require.NoError(t, err)
	assert.Equal(t, d.Spec.Template.Labels, np.Spec.PodSelector.MatchLabels, "the policy selects the app's pods")
}

// In a namespace that enforces the "restricted" Pod Security Standard, a
// parent made from the README's Deployment has runner pods that are
// admitted too: the copy keeps the security contexts and adds nothing the
// standard forbids.
func TestRunnerPodsOfARestrictedParentAreAdmitted(t *testing.T) {
	template := readDeployment(t).Spec.Template
	a := newApp(t, flame.Config{Max: 1}, appOpts{
		setup: func(e *env, ns string) {
			_, err := e.Cluster.Admin.CoreV1().Namespaces().Patch(context.Background(), ns, "application/merge-patch+json",
				[]byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"restricted"}}}`), metav1.PatchOptions{})
			require.NoError(t, err)
		},
		parent: func(p *corev1.Pod) {
			cmd, env := p.Spec.Containers[0].Command, p.Spec.Containers[0].Env
			p.Spec = *template.Spec.DeepCopy()
			p.Spec.Containers[0].Command, p.Spec.Containers[0].Env = cmd, env // this test binary, not the image
			p.Annotations = map[string]string{testnode.AnnotationExternal: ""}
		},
	})
	out, err := whereFn.Call(context.Background(), a.pool, struct{}{})
	require.NoError(t, err, "a runner pod was refused by Pod Security admission")
	pods := a.runnerPods(t)
	require.Len(t, pods, 1)
	assert.Equal(t, out.Pod, pods[0].Name)
	assert.Equal(t, template.Spec.SecurityContext, pods[0].Spec.SecurityContext)
}
