package pki

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/labbake/labbake/internal/golden"
	"go.yaml.in/yaml/v3"
)

// TestClusterAdminsBinding compares the binding with the one kubectl
// makes for the same request.
func TestClusterAdminsBinding(t *testing.T) {
	b, err := ClusterAdminsBinding()
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "cluster-admins-binding.yaml"), b)
	var got map[string]any
	if err := yaml.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	out := command(t, "kubectl", "create", "clusterrolebinding", KubeletClientGroup,
		"--clusterrole=cluster-admin", "--group="+KubeletClientGroup, "--dry-run=client", "-o", "json")
	var want map[string]any
	if err := json.Unmarshal([]byte(out), &want); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	delete(want["metadata"].(map[string]any), "creationTimestamp")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("binding\n%v\nkubectl's\n%v", got, want)
	}
}
