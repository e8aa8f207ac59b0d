package kubernetes

import (
	"encoding/json"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/thon-dev/thon/internal/sandbox"
)

// Secret keys besides the files.
const (
	keySpec = "spec.json"
)

// sandboxLabels are on the sandbox's Pod and Service.
func (r *Runtime) sandboxLabels(spec sandbox.Spec, hash string) map[string]string {
	l := r.baseLabels(spec.User)
	l[sandbox.LabelGroup] = spec.Group
	l[sandbox.LabelSpec] = hash
	l[LabelPort] = strconv.Itoa(spec.Port)
	return l
}

// storedSpec is what the Secret keeps: the Spec without file contents (those
// are keys of their own) and the hash of the full Spec.
type storedSpec struct {
	Spec sandbox.Spec `json:"spec"`
	Hash string       `json:"hash"`
}

func (r *Runtime) secretFor(spec sandbox.Spec, hash string) (*corev1.Secret, error) {
	stored := storedSpec{Spec: spec, Hash: hash}
	stored.Spec.Files = slices.Clone(spec.Files)
	data := map[string][]byte{}
	for i, f := range spec.Files {
		data[fileKey(i)] = f.Data
		stored.Spec.Files[i].Data = nil
	}
	b, err := json.Marshal(stored)
	if err != nil {
		return nil, err
	}
	data[keySpec] = b
	l := r.baseLabels(spec.User)
	l[sandbox.LabelGroup] = spec.Group
	l[sandbox.LabelSpec] = hash
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: r.SecretName(spec.User), Namespace: r.ns, Labels: l},
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	}, nil
}

// specFrom reads back what secretFor stored.
func specFrom(s *corev1.Secret) (sandbox.Spec, string, error) {
	var stored storedSpec
	if err := json.Unmarshal(s.Data[keySpec], &stored); err != nil {
		return sandbox.Spec{}, "", err
	}
	for i := range stored.Spec.Files {
		stored.Spec.Files[i].Data = s.Data[fileKey(i)]
	}
	return stored.Spec, stored.Hash, nil
}

func (r *Runtime) claimFor(user string) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: r.ClaimName(user), Namespace: r.ns, Labels: r.baseLabels(user)},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: r.size}},
		},
	}
	if r.class != "" {
		c.Spec.StorageClassName = ptr(r.class)
	}
	return c
}

func (r *Runtime) serviceFor(spec sandbox.Spec, hash string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: r.ServiceName(spec.User), Namespace: r.ns,
			Labels:      r.sandboxLabels(spec, hash),
			Annotations: map[string]string{AnnotationImage: spec.Image, AnnotationWorkspace: string(workspaceMode(spec))},
		},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: r.baseLabels(spec.User),
			Ports: []corev1.ServicePort{{
				Name: "ide", Protocol: corev1.ProtocolTCP,
				Port: int32(spec.Port), TargetPort: intstr.FromInt32(int32(spec.Port)),
			}},
		},
	}
}

func workspaceMode(spec sandbox.Spec) sandbox.WorkspaceMode {
	if spec.Workspace == "" {
		return sandbox.WorkspaceVolume
	}
	return spec.Workspace
}

// podFor is the sandbox's Pod.
func (r *Runtime) podFor(spec sandbox.Spec, hash string) *corev1.Pod {
	ws := spec.WorkspacePath()
	var envList []corev1.EnvVar
	for _, v := range spec.Environ() {
		envList = append(envList, corev1.EnvVar{Name: v.Name, Value: v.Value})
	}

	res := corev1.ResourceRequirements{}
	if spec.Limits.NanoCPUs > 0 || spec.Limits.MemoryBytes > 0 {
		rl := corev1.ResourceList{}
		if spec.Limits.NanoCPUs > 0 {
			rl[corev1.ResourceCPU] = *resource.NewMilliQuantity(max(1, spec.Limits.NanoCPUs/1e6), resource.DecimalSI)
		}
		if spec.Limits.MemoryBytes > 0 {
			rl[corev1.ResourceMemory] = *resource.NewQuantity(spec.Limits.MemoryBytes, resource.BinarySI)
		}
		res.Limits, res.Requests = rl, rl.DeepCopy()
	}
	secCtx := &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		RunAsNonRoot:             ptr(true),
	}
	port := intstr.FromInt32(int32(spec.Port))
	c := corev1.Container{
		Name:            containerName,
		Image:           spec.Image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Env:             envList,
		WorkingDir:      ws,
		Ports:           []corev1.ContainerPort{{Name: "ide", ContainerPort: int32(spec.Port), Protocol: corev1.ProtocolTCP}},
		Resources:       res,
		SecurityContext: secCtx,
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: healthPath(spec), Port: port}},
			PeriodSeconds:    2,
			TimeoutSeconds:   2,
			FailureThreshold: 3,
		},
		VolumeMounts: []corev1.VolumeMount{{Name: "workspace", MountPath: ws}},
	}
	ps := corev1.PodSpec{
		Containers:                    []corev1.Container{c},
		RestartPolicy:                 corev1.RestartPolicyAlways,
		TerminationGracePeriodSeconds: ptr(int64(10)),
		Hostname:                      spec.User,
		AutomountServiceAccountToken:  ptr(false),
		EnableServiceLinks:            ptr(false),
		NodeSelector:                  r.nodeSel,
		Tolerations:                   r.tolerate,
		ImagePullSecrets:              r.pullSecs,
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:        ptr(true),
			RunAsUser:           ptr(int64(sandboxUID)),
			RunAsGroup:          ptr(int64(sandboxUID)),
			FSGroup:             ptr(int64(sandboxUID)),
			FSGroupChangePolicy: ptr(corev1.FSGroupChangeOnRootMismatch),
			SeccompProfile:      &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	if workspaceMode(spec) == sandbox.WorkspaceVolume {
		ps.Volumes = append(ps.Volumes, corev1.Volume{Name: "workspace", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: r.ClaimName(spec.User)},
		}})
	} else {
		ps.Volumes = append(ps.Volumes, corev1.Volume{Name: "workspace", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}
	init := corev1.Container{
		Image:           spec.Image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Resources:       res,
		SecurityContext: secCtx.DeepCopy(),
	}
	planFiles(spec.Files).apply(&ps, r.SecretName(spec.User), init)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: r.PodName(spec.User), Namespace: r.ns,
			Labels:      r.sandboxLabels(spec, hash),
			Annotations: map[string]string{AnnotationImage: spec.Image},
		},
		Spec: ps,
	}
}

func healthPath(spec sandbox.Spec) string {
	if spec.HealthPath == "" {
		return "/"
	}
	return spec.HealthPath
}

// policyFor is the instance's NetworkPolicy (see the package documentation).
func (r *Runtime) policyFor() *networkingv1.NetworkPolicy {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	dns := intstr.FromInt32(53)
	role := func(roles ...string) []networkingv1.NetworkPolicyPeer {
		return []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: LabelRole, Operator: metav1.LabelSelectorOpIn, Values: roles}},
		}}}
	}
	egress := []networkingv1.NetworkPolicyEgressRule{
		{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dns}, {Protocol: &tcp, Port: &dns}}},
		{To: role("gateway", "daemon")},
	}
	switch {
	case r.gateway.cidr != "":
		egress = append(egress, networkingv1.NetworkPolicyEgressRule{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: r.gateway.cidr}}}})
	case r.gateway.labels != nil:
		egress = append(egress, networkingv1.NetworkPolicyEgressRule{To: []networkingv1.NetworkPolicyPeer{{PodSelector: r.gateway.labels}}})
	}
	if r.public {
		egress = append(egress, networkingv1.NetworkPolicyEgressRule{To: []networkingv1.NetworkPolicyPeer{
			{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "127.0.0.0/8"}}},
			{IPBlock: &networkingv1.IPBlock{CIDR: "::/0", Except: []string{"fc00::/7", "fe80::/10", "::1/128"}}},
		}})
	}
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: r.PolicyName(), Namespace: r.ns, Labels: map[string]string{LabelInstance: r.instance}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{sandbox.LabelManaged: "true", LabelInstance: r.instance}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: role("daemon", "frontdoor")}},
			Egress:      egress,
		},
	}
}
