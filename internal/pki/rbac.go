package pki

import "fmt"

type roleRef struct {
	APIGroup string `yaml:"apiGroup"`
	Kind     string `yaml:"kind"`
	Name     string `yaml:"name"`
}

type subject struct {
	APIGroup string `yaml:"apiGroup"`
	Kind     string `yaml:"kind"`
	Name     string `yaml:"name"`
}

type clusterRoleBinding struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	RoleRef  roleRef   `yaml:"roleRef"`
	Subjects []subject `yaml:"subjects"`
}

// ClusterAdminsBinding is the ClusterRoleBinding that gives
// KubeletClientGroup the cluster-admin ClusterRole. kube-apiserver's client
// certificate to the kubelets is in that group; kubelets authorize it
// through the API server (SubjectAccessReview on nodes/proxy, nodes/log,
// …), so `kubectl logs` and `exec` work once this object is applied (with
// the admin kubeconfig, in system:masters). One YAML document.
func ClusterAdminsBinding() ([]byte, error) {
	const rbacGroup = "rbac.authorization.k8s.io"
	b := clusterRoleBinding{
		APIVersion: rbacGroup + "/v1",
		Kind:       "ClusterRoleBinding",
		RoleRef:    roleRef{APIGroup: rbacGroup, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []subject{{APIGroup: rbacGroup, Kind: "Group", Name: KubeletClientGroup}},
	}
	b.Metadata.Name = KubeletClientGroup
	out, err := marshalYAML(b)
	if err != nil {
		return nil, fmt.Errorf("pki: ClusterRoleBinding: %w", err)
	}
	return out, nil
}
