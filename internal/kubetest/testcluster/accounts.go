package testcluster

import (
	"context"
	"fmt"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Namespace creates a namespace and its default ServiceAccount (no
// service-account controller runs here to make it, and pods cannot be
// created in a namespace without one).
func (c *Cluster) Namespace(ctx context.Context, name string) error {
	_, err := c.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("testcluster: namespace %s: %w", name, err)
	}
	return c.ServiceAccount(ctx, name, "default")
}

// ServiceAccount creates a ServiceAccount, unless it exists.
func (c *Cluster) ServiceAccount(ctx context.Context, ns, name string) error {
	_, err := c.Admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("testcluster: service account %s/%s: %w", ns, name, err)
	}
	return nil
}

// As returns a client that acts as the ServiceAccount ns/name, with a
// token from the TokenRequest API, as a pod of that account would have:
// it can do what RBAC grants the account and nothing more.
func (c *Cluster) As(ctx context.Context, ns, name string) (kubernetes.Interface, error) {
	exp := int64(3600)
	tr, err := c.Admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("testcluster: token for %s/%s: %w", ns, name, err)
	}
	return kubernetes.NewForConfig(c.Config(tr.Status.Token))
}
