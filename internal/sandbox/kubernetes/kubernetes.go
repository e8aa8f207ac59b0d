// Package kubernetes runs sandboxes on a Kubernetes cluster: per participant a
// Pod (the IDE), a Service the front door proxies to, a Secret holding the
// sandbox's files and its spec, and a PersistentVolumeClaim for a volume
// workspace. Everything carries the THON labels, so a restarted daemon finds
// (adopts) what exists instead of recreating it.
//
// # Objects
//
// For user U of instance I (Options.Instance, default "thon") in the namespace
// (Options.Namespace, default "thon"):
//
//   - Service I-U (ClusterIP, port Spec.Port): the sandbox's record. While it
//     exists the user has a sandbox; without a Pod the sandbox is stopped.
//   - Secret I-files-U: Spec (without file contents) under "spec.json", so
//     Start can make the Pod again, and each Spec.Files entry under "f0", "f1"….
//   - PersistentVolumeClaim I-ws-U (volume mode), mounted at
//     /workspace/{group}/{user}; it does not depend on the group, so it
//     survives stop, recreate and group moves. Ephemeral mode uses an emptyDir.
//     Bind mode is refused: a host directory means nothing on a cluster.
//   - Pod I-U: the IDE. It runs as uid/gid 1000 (fsGroup 1000), non-root,
//     without privilege escalation, all capabilities dropped, no service
//     account token and no service links; resources from Spec.Limits as both
//     requests and limits (Limits.Pids is not settable per pod: it is the
//     kubelet's podPidsLimit); a readiness probe GETs Spec.HealthPath on
//     Spec.Port. Readiness comes from the Pod's Ready condition: THON never
//     probes pod IPs.
//   - NetworkPolicy I-sandboxes (one per instance, made by Prepare), see
//     NetworkPolicy below.
//
// Names longer than 63 characters are cut and end in a hash of the full name.
//
// # Files
//
// A file inside a home directory (/home/NAME/…) is written by an init
// container ("thon-files", the sandbox image, running as uid 1000 like the
// IDE): each such home directory is an emptyDir that the init container first
// seeds with the image's own /home/NAME, then it makes the missing parent
// directories (owned by uid 1000, mode 0755) and writes the files from the
// Secret with their modes. So the participant can edit the files and write
// next to them. All of them are owned by uid 1000, whatever File.UID says
// (no process in the Pod is root). The image needs /bin/sh, cp, mkdir, cat
// and chmod. A file anywhere else (such as /etc/thon/extensions.txt) is
// mounted read-only from the Secret with its mode (subPath), owned by root,
// group 1000; missing parents are made by the container runtime (root, 0755).
// Like the container's own filesystem in Docker, the home directory lives as
// long as the Pod: stop and start write the files again.
//
// # Endpoint
//
// Instance.Endpoint is the Service's ClusterIP and port ("10.96.3.7:8080"),
// set while the Pod is Running and Ready. It is reachable from inside the
// cluster (where the THON daemon runs) and needs no DNS; the same Service
// also answers at {name}.{namespace}.svc.
//
// # Pause
//
// Kubernetes cannot freeze a Pod. Pause is Stop (the Pod is deleted; PVC,
// Service and Secret stay) and Resume is Start; Capabilities.PauseIsStop
// reports it, so callers can say so. A "paused" sandbox therefore shows as stopped.
//
// # NetworkPolicy
//
// The policy selects every sandbox Pod of the instance. Ingress is allowed
// only from Pods in the same namespace whose label io.thon.role (LabelRole) is
// "daemon" or "frontdoor". Egress is allowed to DNS (port 53, UDP and TCP),
// to Pods in the namespace whose io.thon.role is "gateway" or "daemon" (the
// AI gateway, embedded in the daemon by default), to Options.GatewayService
// when set (a CIDR or IP address for a gateway outside the cluster, or a
// label selector "k=v,…" for gateway Pods in the namespace), and to public
// addresses only when Options.PublicEgress is set. Sandboxes cannot reach one
// another. A NetworkPolicy is enforced only where the cluster's network
// plugin enforces policy (Calico, Cilium, …); elsewhere it is stored and
// ignored.
//
// # Scale
//
// State comes from a shared informer (Pods and Services with this instance's
// labels, in the namespace): Inspect and List read its cache, never the API.
// Writes go through a client-side rate limit (Options.QPS/Burst), at most
// Options.Concurrency requests at once, and retries with backoff on
// conflicts, 429s and server timeouts. A Create is four requests (Secret,
// PVC, Service, Pod), a Start after a Stop three (Secret and PVC get, Pod).
//
// # Permissions
//
// PolicyRules lists what THON needs in its namespace (a Role), and
// ClusterPolicyRules the optional cluster-wide rights (check the storage
// class, make the namespace).
package kubernetes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/thon-dev/thon/internal/sandbox"
)

// Labels and annotations this engine adds besides the ones in package sandbox.
const (
	// LabelInstance carries Options.Instance, so two THONs (or two tests)
	// sharing a namespace never see each other's sandboxes.
	LabelInstance = "io.thon.instance"
	// LabelPort is the IDE's port inside the sandbox (Spec.Port).
	LabelPort = "io.thon.port"
	// LabelRole marks THON's own Pods for the NetworkPolicy: "daemon" and
	// "frontdoor" may reach sandboxes; sandboxes may reach "gateway" and
	// "daemon".
	LabelRole = "io.thon.role"
	// AnnotationImage records Spec.Image on the Service, for a stopped sandbox.
	AnnotationImage = "io.thon.image"
	// AnnotationWorkspace records Spec.Workspace on the Service.
	AnnotationWorkspace = "io.thon.workspace"
)

// Defaults for Options.
const (
	DefaultNamespace     = "thon"
	DefaultInstance      = "thon"
	DefaultWorkspaceSize = "10Gi"
	DefaultQPS           = 50
	DefaultBurst         = 100
	DefaultConcurrency   = 32
)

// sandboxUID is the user (and group) the sandbox's processes run as: the
// "coder" user of the code-server image.
const sandboxUID = 1000

// Container names in the sandbox Pod.
const (
	containerName = "sandbox"
	initName      = "thon-files"
)

// Options configures a Runtime.
type Options struct {
	// Kubeconfig is a kubeconfig file; "" uses the in-cluster service
	// account, then $KUBECONFIG, then ~/.kube/config.
	Kubeconfig string
	// Namespace holds every sandbox; default "thon".
	Namespace string
	// StorageClass of the workspace PVCs; "" uses the cluster's default.
	StorageClass string
	// WorkspaceSize is each workspace PVC's requested size; default "10Gi".
	WorkspaceSize string
	// NodeSelector, Tolerations and ImagePullSecrets go into every sandbox Pod.
	NodeSelector     map[string]string
	Tolerations      []corev1.Toleration
	ImagePullSecrets []string
	// Instance starts every object name and is stored in the
	// io.thon.instance label, like the Docker engine's name prefix;
	// default "thon".
	Instance string
	// QPS and Burst limit THON's requests to the API server; defaults 50
	// and 100.
	QPS   float32
	Burst int
	// Concurrency bounds THON's requests in flight; default 32.
	Concurrency int
	// GatewayService lets sandboxes reach an AI gateway the NetworkPolicy
	// would not otherwise allow: a CIDR or an IP address ("10.0.0.5",
	// "192.168.1.0/24", for a gateway outside the cluster), or a label
	// selector ("app=thon-gateway") of gateway Pods in the namespace. Pods
	// labelled io.thon.role=gateway or daemon are always allowed.
	GatewayService string
	// PublicEgress also lets sandboxes reach public (non-private) addresses,
	// such as package registries.
	PublicEgress bool
	// WrapTransport, when set, wraps the HTTP transport to the API server
	// (to count or trace requests).
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

// Runtime is the Kubernetes implementation of sandbox.Runtime.
type Runtime struct {
	cs        k8s.Interface
	cfg       *rest.Config
	source    string // where the configuration came from, for messages
	ns        string
	instance  string
	class     string
	size      resource.Quantity
	nodeSel   map[string]string
	tolerate  []corev1.Toleration
	pullSecs  []corev1.LocalObjectReference
	gateway   gatewayRule
	public    bool
	sem       chan struct{}
	informers *informerCache

	mu          sync.Mutex
	storageOK   bool // the storage class was checked (or cannot be)
	preparedNet bool // namespace and NetworkPolicy are in place

	nodesMu sync.Mutex
	nodes   sandbox.Machine // the nodes' allocatable resources, listed at nodesAt
	nodesAt time.Time
}

var _ sandbox.Runtime = (*Runtime)(nil)

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	instanceRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$`)
)

// New returns a Runtime for the cluster opts describes. It reads the
// configuration but does not contact the cluster: Ping or Prepare do.
func New(o Options) (*Runtime, error) {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.Instance == "" {
		o.Instance = DefaultInstance
	}
	if o.WorkspaceSize == "" {
		o.WorkspaceSize = DefaultWorkspaceSize
	}
	if o.QPS <= 0 {
		o.QPS = DefaultQPS
	}
	if o.Burst <= 0 {
		o.Burst = DefaultBurst
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if !nameRE.MatchString(o.Namespace) {
		return nil, sandbox.Hintf(nil, "use lowercase letters, digits and '-' (at most 63)", "invalid Kubernetes namespace %q", o.Namespace)
	}
	if !instanceRE.MatchString(o.Instance) {
		return nil, sandbox.Hintf(nil, "use lowercase letters, digits and '-', starting with a letter (at most 32)", "invalid THON instance name %q", o.Instance)
	}
	size, err := resource.ParseQuantity(o.WorkspaceSize)
	if err != nil || size.Sign() <= 0 {
		return nil, sandbox.Hintf(err, "use a size such as 10Gi or 500Mi", "invalid workspace size %q", o.WorkspaceSize)
	}
	gw, err := parseGateway(o.GatewayService)
	if err != nil {
		return nil, err
	}
	cfg, source, err := loadConfig(o.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = o.QPS, o.Burst
	cfg.UserAgent = "thon"
	if o.WrapTransport != nil {
		cfg.Wrap(o.WrapTransport)
	}
	cs, err := k8s.NewForConfig(cfg)
	if err != nil {
		return nil, sandbox.Hintf(err, "check the kubeconfig ("+source+")", "cannot use the Kubernetes configuration: %v", err)
	}
	r := &Runtime{
		cs:       cs,
		cfg:      cfg,
		source:   source,
		ns:       o.Namespace,
		instance: o.Instance,
		class:    o.StorageClass,
		size:     size,
		nodeSel:  o.NodeSelector,
		tolerate: o.Tolerations,
		gateway:  gw,
		public:   o.PublicEgress,
		sem:      make(chan struct{}, o.Concurrency),
	}
	for _, s := range o.ImagePullSecrets {
		r.pullSecs = append(r.pullSecs, corev1.LocalObjectReference{Name: s})
	}
	r.informers = newInformerCache(r)
	return r, nil
}

// loadConfig finds the client configuration: the given kubeconfig, else the
// in-cluster service account, else $KUBECONFIG, else ~/.kube/config.
func loadConfig(path string) (*rest.Config, string, error) {
	const hint = "set sandbox.kubernetes.kubeconfig to a kubeconfig file (or $KUBECONFIG), or run THON inside the cluster"
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return nil, "", sandbox.Hintf(err, hint, "cannot read the kubeconfig %s: %v", path, err)
		}
		cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: path}, &clientcmd.ConfigOverrides{}).ClientConfig()
		if err != nil {
			return nil, "", sandbox.Hintf(err, "fix the kubeconfig "+path, "invalid kubeconfig %s: %v", path, err)
		}
		return cfg, "kubeconfig " + path, nil
	}
	if cfg, err := rest.InClusterConfig(); err == nil {
		return cfg, "in-cluster service account", nil
	} else if !errors.Is(err, rest.ErrNotInCluster) {
		return nil, "", sandbox.Hintf(err, hint, "cannot use the in-cluster Kubernetes configuration: %v", err)
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	source := "~/.kube/config"
	if env := os.Getenv(clientcmd.RecommendedConfigPathEnvVar); env != "" {
		source = "$KUBECONFIG (" + env + ")"
	} else {
		source = "kubeconfig " + clientcmd.RecommendedHomeFile
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, "", sandbox.Hintf(err, hint, "no Kubernetes configuration found: not inside a cluster, $KUBECONFIG is not set and %s does not exist", clientcmd.RecommendedHomeFile)
		}
		return nil, "", sandbox.Hintf(err, "fix "+source, "invalid Kubernetes configuration in %s: %v", source, err)
	}
	return cfg, source, nil
}

// Close stops the informers; sandboxes keep running.
func (r *Runtime) Close() error {
	r.informers.close()
	return nil
}

// Name is "kubernetes".
func (r *Runtime) Name() string { return "kubernetes" }

// Namespace is the namespace holding the sandboxes.
func (r *Runtime) Namespace() string { return r.ns }

// Server is the API server's address.
func (r *Runtime) Server() string { return r.cfg.Host }

// Clientset is the client this runtime uses (for tests and tools).
func (r *Runtime) Clientset() k8s.Interface { return r.cs }

// Ping asks the API server for its version; its error names the server and
// where its address came from.
func (r *Runtime) Ping(ctx context.Context) error {
	if err := r.do(ctx, func() error {
		return r.cs.Discovery().RESTClient().Get().AbsPath("/version").Do(ctx).Error()
	}); err != nil {
		return r.apiErr("reach", "the API server", "", err)
	}
	return nil
}

// Object names. Only for people and uniqueness: sandboxes are found by label.

// PodName is the name of user's Pod: {instance}-{user}.
func (r *Runtime) PodName(user string) string { return dnsName(r.instance + "-" + user) }

// ServiceName is the name of user's Service: {instance}-{user}.
func (r *Runtime) ServiceName(user string) string { return dnsName(r.instance + "-" + user) }

// SecretName is the name of user's Secret: {instance}-files-{user}.
func (r *Runtime) SecretName(user string) string { return dnsName(r.instance + "-files-" + user) }

// ClaimName is the name of user's workspace PVC: {instance}-ws-{user}. It does
// not depend on the group, so it follows the user to a new group.
func (r *Runtime) ClaimName(user string) string { return dnsName(r.instance + "-ws-" + user) }

// PolicyName is the name of the instance's NetworkPolicy.
func (r *Runtime) PolicyName() string { return dnsName(r.instance + "-sandboxes") }

// dnsName keeps s a DNS label: a name over 63 characters is cut and ends in
// a hash of the whole name.
func dnsName(s string) string {
	if len(s) <= 63 {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return strings.TrimRight(s[:54], "-") + "-" + hex.EncodeToString(sum[:4])
}

// selector selects this instance's managed objects.
func (r *Runtime) selector() string {
	return sandbox.LabelManaged + "=true," + LabelInstance + "=" + r.instance
}

// baseLabels are on every object of user's sandbox.
func (r *Runtime) baseLabels(user string) map[string]string {
	return map[string]string{
		sandbox.LabelManaged: "true",
		LabelInstance:        r.instance,
		sandbox.LabelUser:    user,
	}
}

// ours: labels are those of user's sandbox in this instance.
func (r *Runtime) ours(m metav1.Object, user string) bool {
	l := m.GetLabels()
	return l[sandbox.LabelManaged] == "true" && l[LabelInstance] == r.instance && l[sandbox.LabelUser] == user
}

func (r *Runtime) validateSpec(spec sandbox.Spec) error {
	if err := spec.Check(r.Capabilities(), "Kubernetes"); err != nil {
		return err
	}
	total := 0
	for _, f := range spec.Files {
		total += len(f.Data)
	}
	if total > maxFilesBytes {
		return sandbox.Hintf(nil, "make the assistants' base configs smaller",
			"the sandbox files of %s take %d bytes: more than a Kubernetes Secret holds (%d)", spec.User, total, maxFilesBytes)
	}
	return nil
}

// maxFilesBytes leaves room in a Secret (1 MiB) for the spec.
const maxFilesBytes = 900 << 10

// gatewayRule is Options.GatewayService parsed.
type gatewayRule struct {
	cidr   string
	labels *metav1.LabelSelector
}

func parseGateway(s string) (gatewayRule, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return gatewayRule{}, nil
	}
	if strings.Contains(s, "=") {
		sel, err := metav1.ParseToLabelSelector(s)
		if err != nil {
			return gatewayRule{}, sandbox.Hintf(err, "use a CIDR, an IP address or a label selector such as app=thon-gateway", "invalid gateway %q: %v", s, err)
		}
		return gatewayRule{labels: sel}, nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return gatewayRule{cidr: p.Masked().String()}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return gatewayRule{cidr: netip.PrefixFrom(a, a.BitLen()).String()}, nil
	}
	return gatewayRule{}, sandbox.Hintf(nil, "use a CIDR (10.0.0.0/24), an IP address or a label selector such as app=thon-gateway", "invalid gateway %q", s)
}

// String describes the runtime for messages.
func (r *Runtime) String() string {
	return fmt.Sprintf("kubernetes %s namespace %s", r.cfg.Host, r.ns)
}

// Capabilities: Kubernetes probes readiness itself, cannot pause, runs a Pod
// as soon as it exists, keeps no logs of a deleted Pod and has no host
// directories for bind workspaces.
func (r *Runtime) Capabilities() sandbox.Capabilities {
	return sandbox.Capabilities{
		ReadyIsHealthy: true,
		PauseIsStop:    true,
		CreateStarts:   true,
		Workspaces:     []sandbox.WorkspaceMode{sandbox.WorkspaceVolume, sandbox.WorkspaceEphemeral},
	}
}
