package daemon

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/sandbox/docker"
	"github.com/thon-dev/thon/internal/sandbox/kubernetes"
)

// newRuntime connects to the engine sandbox.runtime names.
func newRuntime(s config.Sandbox, instance string) (sandbox.Runtime, error) {
	if s.Runtime != config.RuntimeKubernetes {
		return docker.New(docker.Options{NamePrefix: instance, Network: instance})
	}
	k := s.Kubernetes
	o := kubernetes.Options{
		Kubeconfig: k.Kubeconfig, Namespace: k.Namespace, StorageClass: k.StorageClass, WorkspaceSize: k.WorkspaceSize,
		NodeSelector: k.NodeSelector, ImagePullSecrets: k.ImagePullSecrets, Instance: instance, GatewayService: k.Gateway,
		Concurrency: s.Concurrency * 4, // a create is four requests
	}
	for _, t := range k.Tolerations {
		pt, err := config.ParseToleration(t)
		if err != nil {
			return nil, err
		}
		tol := corev1.Toleration{Key: pt.Key, Value: pt.Value, Effect: corev1.TaintEffect(pt.Effect), Operator: corev1.TolerationOpEqual}
		if pt.Exists {
			tol.Operator = corev1.TolerationOpExists
		}
		o.Tolerations = append(o.Tolerations, tol)
	}
	return kubernetes.New(o)
}
