package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	kvv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/labbake/labbake/builders/kit"
	"github.com/labbake/labbake/internal/bake"
	"github.com/labbake/labbake/internal/macaddr"
	"github.com/labbake/labbake/internal/published"
)

const (
	kvMasterQcow = "1111111111111111111111111111111111111111111111111111111111111111"
	kvNodeQcow   = "2222222222222222222222222222222222222222222222222222222222222222"
	kvMasterDisk = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
	kvNodeDisk   = "sha256:4444444444444444444444444444444444444444444444444444444444444444"
)

// kubeVirtLabDir is a lab of a UEFI master and a BIOS node, both built and
// published as containerDisks to ghcr.io/acme/labbake-ROLE.
func kubeVirtLabDir(t *testing.T) (lab, out string) {
	t.Helper()
	lab = t.TempDir()
	out = filepath.Join(lab, "output")
	if err := os.WriteFile(filepath.Join(lab, "lab.yaml"), []byte("name: kv\nnodes:\n"+
		"  - {name: master, role: master, ip: 172.18.0.2, cpus: 2, memory: 2GiB}\n"+
		"  - {name: node-one, role: node, ip: 172.18.0.3, cpus: 1, memory: 1536MiB}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ role, qcow, disk, boot string }{
		{"master", kvMasterQcow, kvMasterDisk, "uefi"},
		{"node", kvNodeQcow, kvNodeDisk, "bios"},
	} {
		m := bake.Manifest{Role: r.role, Output: bake.ManifestOutput{SHA256: r.qcow}, Boot: bake.ManifestBoot{Methods: []string{r.boot}}}
		b, _ := json.Marshal(m)
		if err := os.WriteFile(filepath.Join(out, r.role+".manifest.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		rec := &published.Record{
			Role: r.role, PlanDigest: "sha256:" + strings.Repeat("5", 64), QCOW2SHA256: r.qcow,
			ContainerDisk: &published.Image{Repository: "ghcr.io/acme/labbake-" + r.role, Digest: r.disk, Tags: []string{"v1-disk"}},
		}
		if err := published.Write(out, rec); err != nil {
			t.Fatal(err)
		}
	}
	return lab, out
}

func TestKitKubeVirtRepository(t *testing.T) {
	for _, tc := range []struct{ pattern, want string }{
		{"ghcr.io/acme/labbake-{role}", "ghcr.io/acme/labbake-node"},
		{"ghcr.io/acme/labbake", "ghcr.io/acme/labbake-node"},
		{"ghcr.io/acme/{role}/disk", "ghcr.io/acme/node/disk"},
		{"registry.local:5000/{role}-{role}", "registry.local:5000/node-node"},
	} {
		if got := kubeVirtRepository(tc.pattern, "node"); got != tc.want {
			t.Errorf("kubeVirtRepository(%q) = %q, want %q", tc.pattern, got, tc.want)
		}
	}
}

func TestKitKubeVirt(t *testing.T) {
	lab, out := kubeVirtLabDir(t)
	dir := filepath.Join(out, "kit", "kubevirt")
	// Files of a machine an earlier lab.yaml had go; other files stay.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vm-old.yaml", "secret-old.yaml", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Without {role}: -ROLE is appended.
	stdout, stderr, code := run(t, "-C", lab, "kit", "--kubevirt", "ghcr.io/acme/labbake")
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if strings.TrimSpace(stdout) != dir {
		t.Errorf("stdout %q, want %s", stdout, dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		st, _ := e.Info()
		want := os.FileMode(0o644)
		if strings.HasPrefix(e.Name(), "secret-") || e.Name() == "notes.txt" {
			want = 0o600
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", e.Name(), st.Mode().Perm(), want)
		}
	}
	if want := "README kustomization.yaml network.yaml notes.txt secret-master.yaml secret-node-one.yaml vm-master.yaml vm-node-one.yaml"; strings.Join(names, " ") != want {
		t.Errorf("files %q, want %s", names, want)
	}

	// The Secrets hold the very documents labbake seed puts on the ISOs.
	if _, stderr, code := run(t, "-C", lab, "seed", "--all"); code != 0 {
		t.Fatalf("seed: exit %d: %s", code, stderr)
	}
	for _, m := range []struct {
		name, role, digest, firmware string
		cpus                         uint32
		memory                       string
	}{
		{"master", "master", kvMasterDisk, "uefi", 2, "2Gi"},
		{"node-one", "node", kvNodeDisk, "bios", 1, "1536Mi"},
	} {
		var sec corev1.Secret
		var vm kvv1.VirtualMachine
		for file, v := range map[string]any{"secret-" + m.name + ".yaml": &sec, "vm-" + m.name + ".yaml": &vm} {
			b, err := os.ReadFile(filepath.Join(dir, file))
			if err != nil {
				t.Fatal(err)
			}
			if err := yaml.UnmarshalStrict(b, v); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
		}
		iso, err := os.ReadFile(filepath.Join(out, "seed", m.name+".iso"))
		if err != nil {
			t.Fatal(err)
		}
		ud, nd := sec.Data["userdata"], sec.Data["networkdata"]
		if len(ud) == 0 || len(nd) == 0 || !bytes.Contains(iso, ud) || !bytes.Contains(iso, nd) {
			t.Errorf("%s: the Secret's documents are not the seed ISO's", m.name)
		}
		spec := vm.Spec.Template.Spec
		if img := spec.Volumes[0].ContainerDisk; img == nil || img.Image != "ghcr.io/acme/labbake-"+m.role+"@"+m.digest {
			t.Errorf("%s: root disk %+v", m.name, spec.Volumes[0])
		}
		if ci := spec.Volumes[1].CloudInitNoCloud; ci == nil || ci.UserDataSecretRef.Name != sec.Name || ci.NetworkDataSecretRef.Name != sec.Name {
			t.Errorf("%s: cloud-init %+v, Secret %s", m.name, spec.Volumes[1], sec.Name)
		}
		ifs := spec.Domain.Devices.Interfaces
		if ifs[0].MacAddress != kit.UplinkMAC(m.name) || ifs[1].MacAddress != macaddr.String(m.name) {
			t.Errorf("%s: MACs %s %s", m.name, ifs[0].MacAddress, ifs[1].MacAddress)
		}
		for _, mac := range []string{ifs[0].MacAddress, ifs[1].MacAddress} {
			if !bytes.Contains(nd, []byte(mac)) {
				t.Errorf("%s: the seed's network-config does not name %s", m.name, mac)
			}
		}
		if spec.Domain.CPU.Cores != m.cpus || spec.Domain.Resources.Requests.Memory().String() != m.memory {
			t.Errorf("%s: %d cores, memory %s", m.name, spec.Domain.CPU.Cores, spec.Domain.Resources.Requests.Memory())
		}
		if uefi := spec.Domain.Firmware != nil && spec.Domain.Firmware.Bootloader.EFI != nil; uefi != (m.firmware == "uefi") {
			t.Errorf("%s: firmware %+v, want %s", m.name, spec.Domain.Firmware, m.firmware)
		}
	}
	// The seeds' private keys are in the Secrets only.
	for _, name := range []string{"README", "kustomization.yaml", "network.yaml", "vm-master.yaml", "vm-node-one.yaml"} {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		if bytes.Contains(b, []byte("PRIVATE KEY")) || bytes.Contains(b, []byte("userdata:")) {
			t.Errorf("%s holds seed content", name)
		}
	}
}

func TestKitKubeVirtRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, out string)
		args   []string
		want   string
	}{
		{"not published", func(t *testing.T, out string) { os.Remove(published.Path(out, "node")) }, nil,
			"labbake: node: not published: "},
		{"no containerdisk", func(t *testing.T, out string) {
			r, _ := published.Read(out, "node")
			r.ContainerDisk, r.Artifact = nil, &published.Image{Repository: "ghcr.io/acme/labbake-node", Digest: kvNodeDisk}
			published.Write(out, r)
		}, nil, "node.published.json has no containerdisk"},
		{"another repository", nil, []string{"--kubevirt", "ghcr.io/other/labbake-{role}"},
			"its containerDisk is in ghcr.io/acme/labbake-master, not ghcr.io/other/labbake-master"},
		{"rebuilt since published", func(t *testing.T, out string) {
			m := bake.Manifest{Role: "node", Output: bake.ManifestOutput{SHA256: strings.Repeat("9", 64)}, Boot: bake.ManifestBoot{Methods: []string{"bios"}}}
			b, _ := json.Marshal(m)
			os.WriteFile(filepath.Join(out, "node.manifest.json"), b, 0o644)
		}, nil, "labbake: node: rebuilt since published; publish again"},
		{"no manifest", func(t *testing.T, out string) { os.Remove(filepath.Join(out, "master.manifest.json")) }, nil,
			"master.manifest.json does not exist"},
		{"no boot loader", func(t *testing.T, out string) {
			m := bake.Manifest{Role: "node", Output: bake.ManifestOutput{SHA256: kvNodeQcow}}
			b, _ := json.Marshal(m)
			os.WriteFile(filepath.Join(out, "node.manifest.json"), b, 0o644)
		}, nil, "no boot loader"},
		{"damaged record", func(t *testing.T, out string) {
			os.WriteFile(published.Path(out, "node"), []byte(`{"role":"node"}`), 0o644)
		}, nil,
			"plan_digest"},
		{"bad repository", nil, []string{"--kubevirt", "ghcr.io/Acme/{role}"}, "is not a repository"},
		{"empty repository", nil, []string{"--kubevirt", ""}, "--kubevirt: name the containerDisks' repository"},
		{"with --network", nil, []string{"--kubevirt", "ghcr.io/acme/labbake-{role}", "--network", "user"}, "--network is the host kit's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab, out := kubeVirtLabDir(t)
			if tc.change != nil {
				tc.change(t, out)
			}
			args := tc.args
			if args == nil {
				args = []string{"--kubevirt", "ghcr.io/acme/labbake-{role}"}
			}
			stdout, stderr, code := run(t, append([]string{"-C", lab, "kit"}, args...)...)
			if code != 2 || !strings.Contains(stderr, tc.want) || strings.Contains(strings.TrimSpace(stderr), "\n") {
				t.Errorf("exit %d, stderr %q; want exit 2 and one line with %q\nstdout: %s", code, stderr, tc.want, stdout)
			}
			for _, p := range []string{filepath.Join(out, "kit", "kubevirt"), filepath.Join(out, "pki")} {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("%s made", p)
				}
			}
		})
	}
}
