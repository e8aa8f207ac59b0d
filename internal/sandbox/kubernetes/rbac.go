package kubernetes

import rbacv1 "k8s.io/api/rbac/v1"

// PolicyRules are the permissions THON needs in its namespace, for a Role
// bound to its ServiceAccount. Without "namespaces" (cluster-scoped: a Role
// cannot grant it) Prepare takes the namespace to exist; without reading
// "storageclasses" (a ClusterRole) the storage class is not checked up front.
func PolicyRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "services"}, Verbs: []string{"get", "list", "watch", "create", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
		// exec: Archive runs tar in the IDE's container (thon export).
		{APIGroups: []string{""}, Resources: []string{"pods/exec"}, Verbs: []string{"create", "get"}},
		// The metrics API (metrics-server): each sandbox's CPU and memory.
		{APIGroups: []string{"metrics.k8s.io"}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "create", "update", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims"}, Verbs: []string{"get", "create", "delete"}},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"get", "create", "update"}},
	}
}

// ClusterPolicyRules are the optional cluster-wide permissions, for a
// ClusterRole: check the storage class, make the namespace when missing,
// and sum the nodes' resources (the machine's total beside the sandboxes'
// usage).
func ClusterPolicyRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"list"}},
		{APIGroups: []string{"storage.k8s.io"}, Resources: []string{"storageclasses"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "create"}},
	}
}
