// Package kube runs goflame runners as Kubernetes pods: a Launcher for
// flame.RemoteBackend that creates one pod per runner from the parent
// pod's own container, watches the pool's pods with one watch, and
// deletes them when the pool is done with them.
package kube
