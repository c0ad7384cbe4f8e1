package testnode

import (
	"fmt"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// containerEnv is the environment a kubelet gives the container: PATH
// (a container's image would set it), then the container's env with
// downward-API fields resolved. The rest of this process's environment
// does not leak in.
func containerEnv(kp *corev1.Pod, c *corev1.Container, podIP string) ([]string, error) {
	if len(c.EnvFrom) > 0 {
		return nil, fmt.Errorf("testnode: envFrom is not supported")
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOSTNAME=" + kp.Name}
	for _, e := range c.Env {
		v := e.Value
		if f := e.ValueFrom; f != nil {
			if f.FieldRef == nil {
				return nil, fmt.Errorf("testnode: env %s: only fieldRef is supported in valueFrom", e.Name)
			}
			var err error
			if v, err = fieldValue(kp, f.FieldRef.FieldPath, podIP); err != nil {
				return nil, fmt.Errorf("testnode: env %s: %w", e.Name, err)
			}
		}
		env = append(env, e.Name+"="+v)
	}
	return env, nil
}

// fieldValue is a downward-API field of the pod.
func fieldValue(kp *corev1.Pod, path, podIP string) (string, error) {
	switch path {
	case "metadata.name":
		return kp.Name, nil
	case "metadata.namespace":
		return kp.Namespace, nil
	case "metadata.uid":
		return string(kp.UID), nil
	case "spec.nodeName":
		return kp.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return kp.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return podIP, nil
	case "status.hostIP", "status.hostIPs":
		return "127.0.0.1", nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": kp.Labels, "metadata.annotations": kp.Annotations} {
		if key, ok := strings.CutPrefix(path, prefix+"['"); ok && strings.HasSuffix(key, "']") {
			return m[strings.TrimSuffix(key, "']")], nil
		}
	}
	return "", fmt.Errorf("field %q is not supported", path)
}
