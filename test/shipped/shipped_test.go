package shipped

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/labbake/labbake/internal/golden"
	"github.com/labbake/labbake/internal/pki"
	"github.com/labbake/labbake/internal/recipe"
)

// labDir is the repository root: the shipped lab.
const labDir = "../.."

// variants of the shipped lab the golden files cover: as shipped, and
// through the values files a user (or the cluster test) would pass.
var variants = []struct {
	name   string
	values []string
}{
	{"calico", nil},
	{"bridge", []string{"testdata/bridge.yaml"}},
	{"vxlan-ceph", []string{"testdata/vxlan-ceph.yaml"}},
	{"from-source", []string{"../../values/from-source.yaml"}},
}

// role is one rendered role of a variant: the recipe and every file the
// lab's units and overlays put into the image, by path in the image.
type role struct {
	lab   *recipe.Lab
	rec   *recipe.Recipe
	files map[string][]byte
}

func render(t *testing.T, values []string, name string) role {
	t.Helper()
	lab, err := recipe.LoadContext(context.Background(), labDir, values...)
	if err != nil {
		t.Fatalf("loading the shipped lab with %v: %v", values, err)
	}
	rec, err := lab.Recipe(name)
	if err != nil {
		t.Fatalf("recipe %s with %v: %v", name, values, err)
	}
	files := map[string][]byte{}
	for _, u := range rec.Units {
		files["/etc/systemd/system/"+u.Name] = u.Content
	}
	for _, o := range rec.Overlays {
		err := filepath.WalkDir(o.Dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, err := filepath.Rel(o.Dir, p)
			if err != nil {
				return err
			}
			rel = filepath.ToSlash(rel)
			if b, ok := o.Templates[strings.TrimSuffix(rel, ".tmpl")]; ok && strings.HasSuffix(rel, ".tmpl") {
				files["/"+strings.TrimSuffix(rel, ".tmpl")] = b
				return nil
			}
			b, err := os.ReadFile(p)
			files["/"+rel] = b
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range rec.Files {
		if f.Symlink == "" {
			files[f.Path] = f.Content
		}
	}
	return role{lab: lab, rec: rec, files: files}
}

// TestGolden: the rendered recipe of each role and every unit, config and
// manifest it installs, for each variant, equal their golden files.
func TestGolden(t *testing.T) {
	for _, v := range variants {
		for _, name := range []string{"master", "node"} {
			r := render(t, v.values, name)
			got := map[string][]byte{"recipe.yaml": r.rec.Rendered}
			for p, b := range r.files {
				got["files"+p] = b
			}
			compareDir(t, filepath.Join("testdata", "golden", v.name, name), got)
		}
	}
}

// compareDir checks that dir holds exactly the files of want, or writes
// them so with -update.
func compareDir(t *testing.T, dir string, want map[string][]byte) {
	t.Helper()
	if golden.Update() {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		for rel, b := range want {
			p := filepath.Join(dir, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	have := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		have[filepath.ToSlash(rel)] = true
		return nil
	})
	if err != nil {
		t.Fatalf("%v (run go test ./test/shipped -update)", err)
	}
	for rel, b := range want {
		g, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			t.Errorf("%s/%s: %v (run go test ./test/shipped -update)", dir, rel, err)
			continue
		}
		if !bytes.Equal(g, b) {
			t.Errorf("%s/%s differs from the shipped lab (run go test ./test/shipped -update and review the diff)\n--- rendered\n%s\n--- golden\n%s", dir, rel, b, g)
		}
		delete(have, rel)
	}
	for rel := range have {
		t.Errorf("%s/%s: golden file of nothing the lab renders (run go test ./test/shipped -update)", dir, rel)
	}
}

// strict decodes YAML into v refusing unknown and duplicate fields.
func strict(t *testing.T, what string, doc []byte, v any) {
	t.Helper()
	j, err := sigsyaml.YAMLToJSONStrict(doc)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Errorf("%s: strict decode as %T: %v", what, v, err)
	}
}

// typeMeta is what every Kubernetes object starts with.
type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

func (m typeMeta) of(t *testing.T, what string, doc []byte) typeMeta {
	t.Helper()
	var tm typeMeta
	if err := sigsyaml.Unmarshal(doc, &tm); err != nil {
		t.Errorf("%s: %v", what, err)
	}
	return tm
}

// manifestTypes are the kinds the add-ons use, with the Go type of each.
var manifestTypes = map[typeMeta]func() any{
	{"v1", "Namespace"}:                                       func() any { return &corev1.Namespace{} },
	{"v1", "ServiceAccount"}:                                  func() any { return &corev1.ServiceAccount{} },
	{"v1", "ConfigMap"}:                                       func() any { return &corev1.ConfigMap{} },
	{"v1", "Service"}:                                         func() any { return &corev1.Service{} },
	{"apps/v1", "Deployment"}:                                 func() any { return &appsv1.Deployment{} },
	{"apps/v1", "DaemonSet"}:                                  func() any { return &appsv1.DaemonSet{} },
	{"rbac.authorization.k8s.io/v1", "ClusterRole"}:           func() any { return &rbacv1.ClusterRole{} },
	{"rbac.authorization.k8s.io/v1", "ClusterRoleBinding"}:    func() any { return &rbacv1.ClusterRoleBinding{} },
	{"storage.k8s.io/v1", "StorageClass"}:                     func() any { return &storagev1.StorageClass{} },
	{"storage.k8s.io/v1", "CSIDriver"}:                        func() any { return &storagev1.CSIDriver{} },
	{"kustomize.config.k8s.io/v1beta1", "Kustomization"}:      func() any { return &kustomization{} },
	{"kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"}: func() any { return &kubeletv1beta1.KubeletConfiguration{} },
	{"kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration"}: func() any {
		return &kubeproxyv1alpha1.KubeProxyConfiguration{}
	},
}

// kustomization is the part of kustomize's Kustomization the lab writes.
type kustomization struct {
	typeMeta  `json:",inline"`
	Resources []string `json:"resources"`
	Images    []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
	Patches []struct {
		Patch string `json:"patch"`
	} `json:"patches"`
}

// objects decodes every YAML document of a file strictly by its kind.
func objects(t *testing.T, what string, b []byte) []any {
	t.Helper()
	var out []any
	for i, doc := range bytes.Split(b, []byte("\n---\n")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		where := fmt.Sprintf("%s, document %d", what, i+1)
		tm := typeMeta{}.of(t, where, doc)
		mk, ok := manifestTypes[tm]
		if !ok {
			t.Errorf("%s: no Go type known for %s %s", where, tm.APIVersion, tm.Kind)
			continue
		}
		v := mk()
		strict(t, where, doc, v)
		out = append(out, v)
		if k, ok := v.(*kustomization); ok {
			for j, p := range k.Patches {
				out = append(out, objects(t, fmt.Sprintf("%s, patch %d", where, j+1), []byte(p.Patch))...)
			}
		}
	}
	return out
}

// images gathers the images the lab preloads: every string under vars
// that names one (the images maps of vars).
func preloaded(lab *recipe.Lab) map[string]bool {
	set := map[string]bool{}
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(k, x)
			}
		case string:
			if key != "" && strings.Contains(v, ":") && strings.Contains(v, "/") && !strings.Contains(v, "://") {
				set[v] = true
			}
		}
	}
	for _, k := range []string{"images", "calico", "ceph_csi"} {
		if v, ok := lab.Vars[k]; ok {
			walk(k, v)
		}
	}
	return set
}

// TestStrict decodes every Kubernetes file the images get against the
// Kubernetes types, and checks what they say against lab.yaml.
func TestStrict(t *testing.T) {
	for _, v := range variants {
		for _, name := range []string{"master", "node"} {
			r := render(t, v.values, name)
			net := r.lab.Network
			images := preloaded(r.lab)
			checkImage := func(where, ref string) {
				if !images[ref] {
					t.Errorf("%s/%s: %s names image %s, which the lab does not preload (%v)", v.name, name, where, ref, keys(images))
				}
			}
			var paths []string
			for p := range r.files {
				paths = append(paths, p)
			}
			sort.Strings(paths)
			decoded := 0
			for _, p := range paths {
				if !strings.HasSuffix(p, ".yaml") || p == "/etc/crictl.yaml" {
					continue
				}
				where := v.name + "/" + name + ":" + p
				for _, o := range objects(t, where, r.files[p]) {
					decoded++
					switch o := o.(type) {
					case *kubeletv1beta1.KubeletConfiguration:
						if !slices.Equal(o.ClusterDNS, []string{net.ClusterDNS}) || o.ClusterDomain != net.Domain || o.CgroupDriver != "systemd" {
							t.Errorf("%s: clusterDNS %v, clusterDomain %q, cgroupDriver %q", where, o.ClusterDNS, o.ClusterDomain, o.CgroupDriver)
						}
						tainted := len(o.RegisterWithTaints) == 1 && o.RegisterWithTaints[0].Key == "node-role.kubernetes.io/control-plane"
						if tainted != (name == "master") {
							t.Errorf("%s: registerWithTaints %v on the %s", where, o.RegisterWithTaints, name)
						}
					case *kubeproxyv1alpha1.KubeProxyConfiguration:
						if o.Mode != "iptables" || o.ClusterCIDR != net.PodCIDR {
							t.Errorf("%s: mode %q, clusterCIDR %q", where, o.Mode, o.ClusterCIDR)
						}
					case *corev1.Service:
						if o.Name == "kube-dns" && o.Spec.ClusterIP != net.ClusterDNS {
							t.Errorf("%s: kube-dns at %s, not the lab's cluster_dns %s", where, o.Spec.ClusterIP, net.ClusterDNS)
						}
						if o.Name == "headlamp" && (o.Spec.Type != corev1.ServiceTypeNodePort || o.Spec.Ports[0].NodePort != 30061) {
							t.Errorf("%s: headlamp is %s on %d, want NodePort 30061", where, o.Spec.Type, o.Spec.Ports[0].NodePort)
						}
					case *appsv1.Deployment:
						for _, c := range o.Spec.Template.Spec.Containers {
							if c.Image != "" {
								checkImage(p, c.Image)
							}
						}
					case *appsv1.DaemonSet:
						for _, c := range o.Spec.Template.Spec.Containers {
							if c.Image != "" {
								checkImage(p, c.Image)
							}
							for _, e := range c.Env {
								if e.Name == "CALICO_IPV4POOL_CIDR" && e.Value != net.PodCIDR {
									t.Errorf("%s: Calico's pool %s is not the pod range %s", where, e.Value, net.PodCIDR)
								}
							}
						}
					case *kustomization:
						for _, im := range o.Images {
							checkImage(p, im.NewName+":"+im.NewTag)
						}
					case *rbacv1.ClusterRoleBinding:
						if o.Name == pki.KubeletClientGroup {
							b, err := pki.ClusterAdminsBinding()
							if err != nil {
								t.Fatal(err)
							}
							var want rbacv1.ClusterRoleBinding
							strict(t, "pki.ClusterAdminsBinding", b, &want)
							if !reflect.DeepEqual(*o, want) {
								t.Errorf("%s: %+v is not pki.ClusterAdminsBinding() %+v", where, *o, want)
							}
						}
					}
				}
			}
			if decoded == 0 {
				t.Errorf("%s/%s: no Kubernetes file decoded", v.name, name)
			}
			var ctrd struct {
				Version int            `toml:"version"`
				Plugins map[string]any `toml:"plugins"`
			}
			if _, err := toml.Decode(string(r.files["/etc/containerd/config.toml"]), &ctrd); err != nil {
				t.Fatalf("%s/%s: containerd config: %v", v.name, name, err)
			}
			imgs, _ := ctrd.Plugins["io.containerd.cri.v1.images"].(map[string]any)
			pinned, _ := imgs["pinned_images"].(map[string]any)
			sandbox, _ := pinned["sandbox"].(string)
			if ctrd.Version != 3 || sandbox == "" {
				t.Errorf("%s/%s: containerd config version %d, sandbox %q", v.name, name, ctrd.Version, sandbox)
			}
			checkImage("/etc/containerd/config.toml", sandbox)
		}
	}
}

func keys(m map[string]bool) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// debianPaths are the programs units run that the Debian base provides.
var debianPaths = map[string]string{
	"/usr/bin/install":   "coreutils",
	"/usr/sbin/modprobe": "kmod",
}

// TestUnitsRunWhatTheImageHas: every program a unit starts is installed
// by the recipe (an artifact, an overlay file) or by a Debian package of
// the base; every unit orders itself after something and reads
// /etc/network-environment when it uses its variables; the control plane
// is only in the master image.
func TestUnitsRunWhatTheImageHas(t *testing.T) {
	for _, v := range variants {
		for _, name := range []string{"master", "node"} {
			r := render(t, v.values, name)
			have := map[string]bool{}
			for _, a := range r.rec.Artifacts {
				switch {
				case !strings.HasSuffix(a.Dest, "/"):
					have[a.Dest] = true
				case a.Go != nil:
					for _, p := range a.Go.Packages {
						have[a.Dest+path.Base(path.Join(a.Go.Module, p))] = true
					}
				default:
					for _, x := range a.Extract {
						have[a.Dest+path.Base(x)] = true
					}
				}
			}
			// The runtime containerd starts: an artifact, or Debian's.
			if cfg, ok := r.files["/etc/containerd/config.toml"]; ok {
				m := regexp.MustCompile(`BinaryName = '([^']+)'`).FindSubmatch(cfg)
				switch {
				case m == nil:
					t.Errorf("%s/%s: containerd's config names no runtime binary", v.name, name)
				case string(m[1]) == "/usr/sbin/runc" && slices.Contains(r.rec.Base.Debian.Packages, "runc"):
				case !have[string(m[1])]:
					t.Errorf("%s/%s: containerd runs %s, which the image does not have", v.name, name, m[1])
				}
			}
			for p, b := range r.files {
				if len(b) > 2 && string(b[:2]) == "#!" {
					have[p] = true
				}
			}
			for pth, pkg := range debianPaths {
				if !slices.Contains(r.rec.Base.Debian.Packages, pkg) && pkg != "coreutils" {
					t.Errorf("%s/%s: %s needs package %s", v.name, name, pth, pkg)
				}
				have[pth] = true
			}
			for _, u := range r.rec.Units {
				text := strings.ReplaceAll(string(u.Content), "\\\n", " ")
				where := v.name + "/" + name + ": " + u.Name
				for _, line := range strings.Split(text, "\n") {
					k, val, ok := strings.Cut(line, "=")
					if !ok || !strings.HasPrefix(k, "ExecStart") {
						continue
					}
					prog := strings.Fields(strings.TrimLeft(val, "-@+!"))[0]
					if !have[prog] {
						t.Errorf("%s runs %s, which the %s image does not have", where, prog, name)
					}
				}
				if !strings.Contains(text, "\nAfter=") {
					t.Errorf("%s has no After=", where)
				}
				if strings.Contains(text, "${") && !strings.Contains(text, "EnvironmentFile=/etc/network-environment") {
					t.Errorf("%s uses variables without EnvironmentFile=/etc/network-environment", where)
				}
			}
			if name == "node" {
				for p := range have {
					for _, cp := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
						if path.Base(p) == cp {
							t.Errorf("%s/node: the node image has %s", v.name, p)
						}
					}
				}
			}
		}
	}
}

// TestSameImageForEveryLab: a lab with other machine names and addresses
// (and so other PKI) renders the same recipe, units and files for each
// role: only the seeds differ.
func TestSameImageForEveryLab(t *testing.T) {
	for _, name := range []string{"master", "node"} {
		a := render(t, nil, name)
		b := render(t, []string{"testdata/other-lab.yaml"}, name)
		if !bytes.Equal(a.rec.Rendered, b.rec.Rendered) {
			t.Errorf("%s: the recipe differs between two labs:\n%s\n---\n%s", name, a.rec.Rendered, b.rec.Rendered)
		}
		if !reflect.DeepEqual(a.files, b.files) {
			for p := range a.files {
				if !bytes.Equal(a.files[p], b.files[p]) {
					t.Errorf("%s: %s differs between two labs", name, p)
				}
			}
		}
	}
}

// TestScripts: every shell script the lab installs parses (sh -n, the
// image's /bin/sh is dash like the host's).
func TestScripts(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	for _, v := range variants {
		for _, name := range []string{"master", "node"} {
			r := render(t, v.values, name)
			for p, b := range r.files {
				if !bytes.HasPrefix(b, []byte("#!/bin/sh")) {
					continue
				}
				cmd := exec.Command(sh, "-n")
				cmd.Stdin = bytes.NewReader(b)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("%s/%s: %s: sh -n: %v\n%s", v.name, name, p, err, out)
				}
			}
		}
	}
}
