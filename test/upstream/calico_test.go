package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/labbake/labbake/internal/golden"
	"github.com/labbake/labbake/internal/recipe"
)

// shippedLab is the repository root, where the shipped lab is (read only).
const shippedLab = "../.."

// kubeObjects decodes every document of a manifest strictly (unknown or
// duplicate fields refused) into the Kubernetes API type of its kind.
func kubeObjects(t *testing.T, what string, b []byte) []any {
	t.Helper()
	types := map[string]func() any{
		"v1/ConfigMap":      func() any { return &corev1.ConfigMap{} },
		"v1/ServiceAccount": func() any { return &corev1.ServiceAccount{} },
		"rbac.authorization.k8s.io/v1/ClusterRole":        func() any { return &rbacv1.ClusterRole{} },
		"rbac.authorization.k8s.io/v1/ClusterRoleBinding": func() any { return &rbacv1.ClusterRoleBinding{} },
		"apps/v1/DaemonSet":                               func() any { return &appsv1.DaemonSet{} },
		"apps/v1/Deployment":                              func() any { return &appsv1.Deployment{} },
	}
	var out []any
	for i, doc := range bytes.Split(b, []byte("\n---\n")) {
		where := fmt.Sprintf("%s, document %d", what, i+1)
		j, err := sigsyaml.YAMLToJSONStrict(doc)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		var tm struct{ APIVersion, Kind string }
		if err := json.Unmarshal(j, &tm); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		mk, ok := types[tm.APIVersion+"/"+tm.Kind]
		if !ok {
			t.Errorf("%s: unexpected %s %s", where, tm.APIVersion, tm.Kind)
			continue
		}
		v := mk()
		dec := json.NewDecoder(bytes.NewReader(j))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Errorf("%s: strict decode as %T: %v", where, v, err)
		}
		out = append(out, v)
	}
	return out
}

// TestCalicoManifest decodes the stand-in manifest strictly, then applies
// the shipped lab's kustomization (rendered by labbake's recipe package for
// the default BGP and for VXLAN, with the values file Output.Values writes)
// with kubectl kustomize, and checks what the lab's patches must find: the
// calico-node DaemonSet's env and probes, the calico-config ConfigMap, and
// every image renamed to the lab's.
func TestCalicoManifest(t *testing.T) {
	manifest, err := CalicoManifest("v3.31.3")
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "calico.yaml"), manifest)
	var kinds []string
	for _, o := range kubeObjects(t, "calico.yaml", manifest) {
		kinds = append(kinds, fmt.Sprintf("%T", o))
	}
	if len(kinds) != 12 {
		t.Errorf("calico.yaml has %d objects: %v", len(kinds), kinds)
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl: ", err)
	}

	valuesFile := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(valuesFile, fakeOutput(t).Values(), 0o644); err != nil {
		t.Fatal(err)
	}
	vxlan := filepath.Join(t.TempDir(), "vxlan.yaml")
	if err := os.WriteFile(vxlan, []byte("vars:\n  calico: {encapsulation: VXLAN}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name          string
		values        []string
		vxlan, probes string
		backend       string
	}{
		{"bgp", []string{valuesFile}, "Never", "-felix-ready -bird-ready", "bird"},
		{"vxlan", []string{valuesFile, vxlan}, "Always", "-felix-ready", "vxlan"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lab, err := recipe.LoadContext(context.Background(), shippedLab, tt.values...)
			if err != nil {
				t.Fatal(err)
			}
			rec, err := lab.Recipe("master")
			if err != nil {
				t.Fatal(err)
			}
			const kpath = "etc/kubernetes/addons/10-calico/kustomization.yaml"
			var kust []byte
			for _, o := range rec.Overlays {
				if b, ok := o.Templates[kpath]; ok {
					kust = b
				}
			}
			if kust == nil {
				t.Fatalf("the master recipe renders no %s", kpath)
			}
			dir := t.TempDir()
			for name, data := range map[string][]byte{"kustomization.yaml": kust, "calico.yaml": manifest} {
				if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var stderr bytes.Buffer
			cmd := exec.Command("kubectl", "kustomize", dir)
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("kubectl kustomize: %v\n%s", err, stderr.String())
			}
			var images []string
			var node *appsv1.DaemonSet
			var config *corev1.ConfigMap
			for _, o := range kubeObjects(t, "kustomized", out) {
				switch o := o.(type) {
				case *appsv1.DaemonSet:
					node = o
					images = append(images, podImages(o.Spec.Template.Spec)...)
				case *appsv1.Deployment:
					images = append(images, podImages(o.Spec.Template.Spec)...)
				case *corev1.ConfigMap:
					config = o
				}
			}
			slices.Sort(images)
			var want []string
			for _, k := range []string{"cni", "kube_controllers", "node"} {
				want = append(want, lab.Vars["calico"].(map[string]any)["images"].(map[string]any)[k].(string))
			}
			if !slices.Equal(images, want) {
				t.Errorf("images %v, want the lab's %v", images, want)
			}
			if node == nil || config == nil {
				t.Fatal("no calico-node DaemonSet or calico-config ConfigMap after kustomize")
			}
			if config.Data["calico_backend"] != tt.backend || !strings.Contains(config.Data["cni_network_config"], `"type": "calico"`) {
				t.Errorf("calico-config: %v", config.Data)
			}
			c := node.Spec.Template.Spec.Containers[0]
			env := map[string]string{}
			for _, e := range c.Env {
				if _, dup := env[e.Name]; dup {
					t.Errorf("env %s twice", e.Name)
				}
				env[e.Name] = e.Value
			}
			for k, v := range map[string]string{
				"CALICO_IPV4POOL_CIDR":    lab.Network.PodCIDR,
				"CALICO_IPV4POOL_IPIP":    "Never",
				"CALICO_IPV4POOL_VXLAN":   tt.vxlan,
				"IP_AUTODETECTION_METHOD": "interface=lab0",
				"DATASTORE_TYPE":          "kubernetes",
			} {
				if env[k] != v {
					t.Errorf("calico-node env %s = %q, want %q", k, env[k], v)
				}
			}
			if got := strings.Join(c.ReadinessProbe.Exec.Command[1:], " "); got != tt.probes {
				t.Errorf("readiness probe %q, want %q", got, tt.probes)
			}
		})
	}
}

func podImages(s corev1.PodSpec) []string {
	var out []string
	for _, c := range append(slices.Clone(s.InitContainers), s.Containers...) {
		out = append(out, c.Image)
	}
	return out
}

// fakeOutput is an Output with every component and image the shipped lab
// uses, at the default versions, without building anything.
func fakeOutput(t *testing.T) *Output {
	t.Helper()
	v := DefaultVersions()
	o := &Output{}
	comps, err := Components(v)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range DebianComponents(v) {
		comps = append(comps, Component{Name: c.Name, Version: c.Version})
	}
	for _, name := range []string{"calico", "headlamp", "pause"} {
		c, err := component(name, v, nil)
		if err != nil {
			t.Fatal(err)
		}
		comps = append(comps, c)
	}
	for _, c := range comps {
		r := &Result{Component: c, Files: []File{{Name: "standin", Path: "/bin/true"}, {Name: c.Name, Path: "/bin/true"}}}
		o.Results = append(o.Results, r)
		specs, err := imageSpecs(r)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range specs {
			o.Images = append(o.Images, &Image{Spec: s})
		}
	}
	return o
}

// TestValues pins the values file of a full run and lays it over the
// shipped lab with labbake's recipe package: every version the lab takes
// from upstream is the one served, the Debian base has no snapshot, and
// every artifact URL of both roles names a file the layout serves.
func TestValues(t *testing.T) {
	o := fakeOutput(t)
	values := o.Values()
	golden.Check(t, filepath.Join("testdata", "values.yaml"), values)
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, values, 0o644); err != nil {
		t.Fatal(err)
	}
	lab, err := recipe.LoadContext(context.Background(), shippedLab, p)
	if err != nil {
		t.Fatal(err)
	}
	v := DefaultVersions()
	for key, want := range map[string]string{
		"kubernetes": v.Kubernetes, "etcd": v.Etcd, "containerd": v.Containerd, "runc": v.Runc,
		"crictl": v.Crictl, "cni_plugins": v.CNIPlugins, "calico": v.Calico,
	} {
		if got := lab.Vars[key].(map[string]any)["version"]; got != want {
			t.Errorf("vars.%s.version = %v, want %s", key, got, want)
		}
	}
	imgs := lab.Vars["images"].(map[string]any)
	for k, want := range map[string]string{
		"pause":    "registry.k8s.io/pause:" + v.Pause,
		"coredns":  "registry.k8s.io/coredns/coredns:" + v.CoreDNS,
		"headlamp": "ghcr.io/headlamp-k8s/headlamp:" + v.Headlamp,
	} {
		if imgs[k] != want {
			t.Errorf("vars.images.%s = %v, want %s", k, imgs[k], want)
		}
	}

	// The layout of the same versions: what the server would serve.
	served := map[string]bool{}
	for _, p := range layoutPaths(t, v) {
		served["https://"+p] = true
	}
	for _, role := range []string{"master", "node"} {
		rec, err := lab.Recipe(role)
		if err != nil {
			t.Fatal(err)
		}
		if d := rec.Base.Debian; d == nil || d.Snapshot != "" {
			t.Errorf("%s: base %+v, want Debian without a snapshot", role, rec.Base.Debian)
		}
		for _, a := range rec.Artifacts {
			for _, u := range []string{a.URL, a.Archive, a.SHA256URL} {
				if u != "" && !served[u] {
					t.Errorf("%s: %s is not served", role, u)
				}
			}
		}
	}
}

// layoutPaths lays out every downloadable component at v with stand-in
// binaries and returns the paths served.
func layoutPaths(t *testing.T, v Versions) []string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var results []*Result
	for _, r := range fakeOutput(t).Results {
		r := *r
		r.Files = nil
		names := []string{"standin"}
		for _, b := range r.Component.Binaries {
			names = append(names, b.Name)
		}
		switch r.Component.Name {
		case "runc":
			names = []string{"runc"}
		case "cni":
			names = []string{"bridge", "host-local", "loopback", "portmap", "bandwidth"}
		}
		for _, n := range names {
			r.Files = append(r.Files, File{Name: n, Path: bin})
		}
		results = append(results, &r)
	}
	pub, err := Layout(filepath.Join(dir, "www"), results)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range pub {
		out = append(out, p.Path)
	}
	return out
}
