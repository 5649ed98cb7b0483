package kit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	kvv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/yaml"

	yamlv3 "go.yaml.in/yaml/v3"

	"github.com/labbake/labbake/internal/golden"
	"github.com/labbake/labbake/internal/macaddr"
)

const (
	masterDigest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	nodeDigest   = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// kvNetworkConfig is a seed's network-config as builders/seed writes it
// for a machine with an uplink.
func kvNetworkConfig(name, ip string) []byte {
	return []byte(`version: 2
ethernets:
  lab0:
    match:
      macaddress: "` + macaddr.String(name) + `"
    set-name: "lab0"
    dhcp4: false
    dhcp6: false
    addresses:
      - "` + ip + `/16"
    routes:
      - to: "0.0.0.0/0"
        via: "172.18.0.1"
        metric: 200
  uplink0:
    match:
      macaddress: "` + UplinkMAC(name) + `"
    dhcp4: true
    dhcp6: false
    dhcp4-overrides:
      route-metric: 100
    optional: true
`)
}

func kvMachine(name, role, firmware string, cpus int, mib int64, ip, digest string) KubeVirtMachine {
	return KubeVirtMachine{
		Name: name, Role: role, CPUs: cpus, MemoryMiB: mib, Firmware: firmware,
		LabMAC: macaddr.String(name), UplinkMAC: UplinkMAC(name),
		Image:         "ghcr.io/acme/labbake-" + role + "@" + digest,
		UserData:      []byte("#cloud-config\nhostname: \"" + name + "\"\n# not a real key: -----BEGIN OPENSSH PRIVATE KEY-----\n"),
		NetworkConfig: kvNetworkConfig(name, ip),
	}
}

// kubeVirtLab is a two-machine lab: a UEFI master and a BIOS node.
func kubeVirtLab() KubeVirtLab {
	return KubeVirtLab{
		Name:    "mylab",
		Network: KubeVirtNetwork{Name: "mylab", Bridge: "qemu0"},
		Machines: []KubeVirtMachine{
			kvMachine("master", "master", FirmwareUEFI, 2, 2048, "172.18.100.187", masterDigest),
			kvMachine("node-one", "node", FirmwareBIOS, 1, 1536, "172.18.100.122", nodeDigest),
		},
	}
}

func TestKubeVirtGolden(t *testing.T) {
	files, err := KubeVirt(kubeVirtLab())
	if err != nil {
		t.Fatal(err)
	}
	again, err := KubeVirt(kubeVirtLab())
	if err != nil {
		t.Fatal(err)
	}
	if !maps.EqualFunc(files, again, bytes.Equal) {
		t.Error("two renders of the same lab differ")
	}
	names := slices.Sorted(maps.Keys(files))
	want := []string{"README", "kustomization.yaml", "network.yaml", "secret-master.yaml", "secret-node-one.yaml", "vm-master.yaml", "vm-node-one.yaml"}
	if !slices.Equal(names, want) {
		t.Errorf("files %q, want %q", names, want)
	}
	dir := filepath.Join("testdata", "kubevirt")
	for _, name := range names {
		golden.Check(t, filepath.Join(dir, name), files[name])
	}
	if !golden.Update() {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if _, ok := files[e.Name()]; !ok {
				t.Errorf("golden file of no kit file: %s", e.Name())
			}
		}
	}
}

func TestKubeVirtFileModes(t *testing.T) {
	files, err := KubeVirt(kubeVirtLab())
	if err != nil {
		t.Fatal(err)
	}
	for name := range files {
		want := os.FileMode(0o644)
		if strings.HasPrefix(name, "secret-") {
			want = 0o600
		}
		if got := KubeVirtFileMode(name); got != want {
			t.Errorf("KubeVirtFileMode(%q) = %o, want %o", name, got, want)
		}
		if got := IsKubeVirtMachineFile(name); got != (strings.HasPrefix(name, "secret-") || strings.HasPrefix(name, "vm-")) {
			t.Errorf("IsKubeVirtMachineFile(%q) = %v", name, got)
		}
	}
	// The seeds' bytes are in the Secrets and nowhere else.
	for name, b := range files {
		if !strings.HasPrefix(name, "secret-") && bytes.Contains(b, []byte("PRIVATE KEY")) {
			t.Errorf("%s holds seed content", name)
		}
	}
}

// strict decodes a kit file into an API type, refusing unknown fields.
func strict(t *testing.T, name string, b []byte, v any) {
	t.Helper()
	if err := unmarshalStrict(b, v); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, b)
	}
}

// unmarshalStrict is sigs.k8s.io/yaml's UnmarshalStrict (unknown fields
// and duplicate keys are errors) made whole: a type with an UnmarshalJSON
// of its own decodes what it holds leniently (KubeVirt's
// VirtualMachineInstanceSpec does, so the whole VM template would go
// unchecked), so every field of the document must also come back when v
// is encoded again.
func unmarshalStrict(b []byte, v any) error {
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		return err
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return err
	}
	var doc, again any
	if err := json.Unmarshal(j, &doc); err != nil {
		return err
	}
	rt, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(rt, &again); err != nil {
		return err
	}
	return sameFields("", doc, again)
}

// sameFields reports a field of doc that again lacks.
func sameFields(path string, doc, again any) error {
	switch d := doc.(type) {
	case map[string]any:
		a, ok := again.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: an object became %T", path, again)
		}
		for _, k := range slices.Sorted(maps.Keys(d)) {
			av, ok := a[k]
			if !ok {
				return fmt.Errorf("unknown field %q", path+"."+k)
			}
			if err := sameFields(path+"."+k, d[k], av); err != nil {
				return err
			}
		}
	case []any:
		a, ok := again.([]any)
		if !ok || len(a) != len(d) {
			return fmt.Errorf("%s: a list of %d became %v", path, len(d), again)
		}
		for i := range d {
			if err := sameFields(fmt.Sprintf("%s[%d]", path, i), d[i], a[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestKubeVirtAPITypes decodes every object strictly into the real API
// types (KubeVirt, Multus, Kubernetes) and checks what they reference.
func TestKubeVirtAPITypes(t *testing.T) {
	lab := kubeVirtLab()
	files, err := KubeVirt(lab)
	if err != nil {
		t.Fatal(err)
	}

	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	strict(t, KubeVirtKustomization, files[KubeVirtKustomization], &k)
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization: %s %s", k.APIVersion, k.Kind)
	}
	wantRes := []string{"network.yaml", "secret-master.yaml", "secret-node-one.yaml", "vm-master.yaml", "vm-node-one.yaml"}
	if !slices.Equal(k.Resources, wantRes) {
		t.Errorf("kustomization resources %q, want %q", k.Resources, wantRes)
	}

	var nad nadv1.NetworkAttachmentDefinition
	strict(t, KubeVirtNetworkFile, files[KubeVirtNetworkFile], &nad)
	if nad.APIVersion != "k8s.cni.cncf.io/v1" || nad.Kind != "NetworkAttachmentDefinition" || nad.Name != lab.Network.Name {
		t.Errorf("network: %s %s %s", nad.APIVersion, nad.Kind, nad.Name)
	}
	var cni struct {
		CNIVersion string         `json:"cniVersion"`
		Type       string         `json:"type"`
		Bridge     string         `json:"bridge"`
		IPAM       map[string]any `json:"ipam"`
	}
	dec := json.NewDecoder(strings.NewReader(nad.Spec.Config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cni); err != nil {
		t.Fatalf("network config %q: %v", nad.Spec.Config, err)
	}
	if cni.CNIVersion != "0.3.1" || cni.Type != "bridge" || cni.Bridge != "qemu0" || cni.IPAM == nil || len(cni.IPAM) != 0 {
		t.Errorf("network config %q", nad.Spec.Config)
	}
	if want := `{"cniVersion":"0.3.1","type":"bridge","bridge":"qemu0","ipam":{}}`; nad.Spec.Config != want {
		t.Errorf("network config %s, want %s", nad.Spec.Config, want)
	}

	for _, m := range lab.Machines {
		var sec corev1.Secret
		strict(t, SecretFile(m.Name), files[SecretFile(m.Name)], &sec)
		if sec.APIVersion != "v1" || sec.Kind != "Secret" || sec.Type != corev1.SecretTypeOpaque || sec.Name != SecretName(m.Name) {
			t.Errorf("%s: %s %s %s %s", m.Name, sec.APIVersion, sec.Kind, sec.Type, sec.Name)
		}
		if !bytes.Equal(sec.Data["userdata"], m.UserData) || !bytes.Equal(sec.Data["networkdata"], m.NetworkConfig) || len(sec.Data) != 2 || len(sec.StringData) != 0 {
			t.Errorf("%s: the Secret's data is not the seed's documents: %q", m.Name, sec.Data)
		}

		var vm kvv1.VirtualMachine
		strict(t, VMFile(m.Name), files[VMFile(m.Name)], &vm)
		if vm.APIVersion != "kubevirt.io/v1" || vm.Kind != "VirtualMachine" || vm.Name != m.Name {
			t.Errorf("%s: %s %s %s", m.Name, vm.APIVersion, vm.Kind, vm.Name)
		}
		for _, labels := range []map[string]string{vm.Labels, vm.Spec.Template.ObjectMeta.Labels, sec.Labels} {
			if labels[LabelLab] != lab.Name || labels[LabelRole] != m.Role || labels[LabelMachine] != m.Name {
				t.Errorf("%s: labels %v", m.Name, labels)
			}
		}
		if vm.Spec.RunStrategy == nil || *vm.Spec.RunStrategy != kvv1.RunStrategyAlways || vm.Spec.Running != nil {
			t.Errorf("%s: run strategy %v, running %v", m.Name, vm.Spec.RunStrategy, vm.Spec.Running)
		}
		spec := vm.Spec.Template.Spec
		if spec.Hostname != m.Name || spec.Subdomain != lab.Name {
			t.Errorf("%s: hostname %q subdomain %q", m.Name, spec.Hostname, spec.Subdomain)
		}
		d := spec.Domain
		if d.CPU == nil || d.CPU.Cores != uint32(m.CPUs) {
			t.Errorf("%s: cpu %+v, want %d cores", m.Name, d.CPU, m.CPUs)
		}
		if mem := d.Resources.Requests[corev1.ResourceMemory]; mem.Cmp(*resource.NewQuantity(m.MemoryMiB<<20, resource.BinarySI)) != 0 {
			t.Errorf("%s: memory %s, want %d MiB", m.Name, mem.String(), m.MemoryMiB)
		}
		switch m.Firmware {
		case FirmwareUEFI:
			if d.Firmware == nil || d.Firmware.Bootloader == nil || d.Firmware.Bootloader.EFI == nil ||
				d.Firmware.Bootloader.EFI.SecureBoot == nil || *d.Firmware.Bootloader.EFI.SecureBoot {
				t.Errorf("%s: firmware %+v, want EFI without Secure Boot", m.Name, d.Firmware)
			}
		case FirmwareBIOS:
			if d.Firmware != nil {
				t.Errorf("%s: firmware %+v, want the default (BIOS)", m.Name, d.Firmware)
			}
		}

		// Disks: the containerDisk by digest, then the seed from the Secret.
		if len(d.Devices.Disks) != 2 || d.Devices.Disks[0].Name != RootDisk || d.Devices.Disks[1].Name != CloudInitDisk {
			t.Fatalf("%s: disks %+v", m.Name, d.Devices.Disks)
		}
		vols := map[string]kvv1.Volume{}
		for _, v := range spec.Volumes {
			vols[v.Name] = v
		}
		if len(vols) != 2 {
			t.Errorf("%s: volumes %+v", m.Name, spec.Volumes)
		}
		if cd := vols[RootDisk].ContainerDisk; cd == nil || cd.Image != m.Image || !strings.HasSuffix(cd.Image, "@"+map[string]string{"master": masterDigest, "node": nodeDigest}[m.Role]) {
			t.Errorf("%s: root disk %+v, want containerDisk %s", m.Name, vols[RootDisk], m.Image)
		}
		ci := vols[CloudInitDisk].CloudInitNoCloud
		if ci == nil || ci.UserDataSecretRef == nil || ci.NetworkDataSecretRef == nil ||
			ci.UserDataSecretRef.Name != sec.Name || ci.NetworkDataSecretRef.Name != sec.Name ||
			ci.UserData != "" || ci.UserDataBase64 != "" || ci.NetworkData != "" || ci.NetworkDataBase64 != "" {
			t.Errorf("%s: cloud-init volume %+v, want both documents from Secret %s", m.Name, ci, sec.Name)
		}

		// NICs: the pod network by masquerade with the uplink MAC, the lab
		// segment by bridge with the lab MAC, as the seed matches them.
		ifs := d.Devices.Interfaces
		if len(ifs) != 2 {
			t.Fatalf("%s: interfaces %+v", m.Name, ifs)
		}
		if ifs[0].Name != PodNetwork || ifs[0].Masquerade == nil || ifs[0].Bridge != nil || ifs[0].MacAddress != UplinkMAC(m.Name) {
			t.Errorf("%s: pod interface %+v, want masquerade with MAC %s", m.Name, ifs[0], UplinkMAC(m.Name))
		}
		if ifs[1].Name != LabNetwork || ifs[1].Bridge == nil || ifs[1].Masquerade != nil || ifs[1].MacAddress != macaddr.String(m.Name) {
			t.Errorf("%s: lab interface %+v, want bridge with MAC %s", m.Name, ifs[1], macaddr.String(m.Name))
		}
		for _, mac := range []string{ifs[0].MacAddress, ifs[1].MacAddress} {
			if !bytes.Contains(sec.Data["networkdata"], []byte(`macaddress: "`+mac+`"`)) {
				t.Errorf("%s: the seed's network-config does not match MAC %s", m.Name, mac)
			}
		}
		nets := spec.Networks
		if len(nets) != 2 || nets[0].Name != PodNetwork || nets[0].Pod == nil || nets[1].Name != LabNetwork ||
			nets[1].Multus == nil || nets[1].Multus.NetworkName != nad.Name || nets[1].Multus.Default {
			t.Errorf("%s: networks %+v", m.Name, nets)
		}
	}
}

// The strict decoding above does catch a misspelled field.
func TestKubeVirtStrictDecodingCatchesTypos(t *testing.T) {
	files, err := KubeVirt(kubeVirtLab())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file, from, to string
		v              any
	}{
		{"vm-master.yaml", "macAddress:", "macAdress:", &kvv1.VirtualMachine{}},
		{"vm-master.yaml", "networkDataSecretRef:", "networkdataSecretRef:", &kvv1.VirtualMachine{}},
		{"network.yaml", "config:", "cfg:", &nadv1.NetworkAttachmentDefinition{}},
		{"secret-master.yaml", "data:", "date:", &corev1.Secret{}},
	} {
		b := files[tc.file]
		if err := unmarshalStrict(b, tc.v); err != nil {
			t.Fatalf("%s as rendered: %v", tc.file, err)
		}
		bad := bytes.Replace(b, []byte(tc.from), []byte(tc.to), 1)
		if bytes.Equal(bad, b) {
			t.Fatalf("%s has no %q", tc.file, tc.from)
		}
		if err := unmarshalStrict(bad, tc.v); err == nil {
			t.Errorf("%s with %q for %q decoded strictly", tc.file, tc.to, tc.from)
		} else {
			t.Logf("%s with %q: %v", tc.file, tc.to, err)
		}
	}
}

func TestValidImageRef(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		ref string
		ok  bool
	}{
		{"ghcr.io/acme/labbake-node@sha256:" + hex, true},
		{"registry.local:5000/lab/node@sha256:" + hex, true},
		{"localhost:5000/node@sha256:" + hex, true},
		{"labbake-node@sha256:" + hex, true},
		{"ghcr.io/acme/labbake__node.x@sha256:" + hex, true},
		{"ghcr.io/acme/labbake-node", false},
		{"ghcr.io/acme/labbake-node:v1", false},
		{"ghcr.io/acme/labbake-node:v1@sha256:" + hex, false},
		{"ghcr.io/acme/labbake-node@sha256:" + hex[:63], false},
		{"ghcr.io/acme/labbake-node@sha256:" + strings.ToUpper(hex), false},
		{"ghcr.io/acme/labbake-node@sha512:" + hex + hex, false},
		{"ghcr.io/Acme/labbake-node@sha256:" + hex, false},
		{"ghcr.io/acme/-node@sha256:" + hex, false},
		{"ghcr.io/acme/labbake-node@sha256:" + hex + " ", false},
		{"@sha256:" + hex, false},
		{"ghcr.io/" + strings.Repeat("a", 250) + "@sha256:" + hex, false},
	} {
		if err := ValidImageRef(tc.ref); (err == nil) != tc.ok {
			t.Errorf("ValidImageRef(%q) = %v, want ok %v", tc.ref, err, tc.ok)
		}
	}
}

func TestKubeVirtValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*KubeVirtLab)
		want   string // in the error
	}{
		{"lab name", func(l *KubeVirtLab) { l.Name = "My_Lab" }, `name: "My_Lab" is not a DNS-1123 label`},
		{"network name", func(l *KubeVirtLab) { l.Network.Name = "" }, "network.name"},
		{"bridge", func(l *KubeVirtLab) { l.Network.Bridge = "a bridge" }, "network.bridge"},
		{"no machines", func(l *KubeVirtLab) { l.Machines = nil }, "machines: none"},
		{"machine name", func(l *KubeVirtLab) { l.Machines[0].Name = "Master" }, "machines[0].name"},
		{"machine name too long", func(l *KubeVirtLab) { l.Machines[0].Name = strings.Repeat("a", 64) }, "machines[0].name"},
		{"duplicate", func(l *KubeVirtLab) { l.Machines[1] = l.Machines[0] }, `machines[1].name: "master" is also machines[0]`},
		{"role", func(l *KubeVirtLab) { l.Machines[1].Role = "" }, "machines[1].role"},
		{"cpus", func(l *KubeVirtLab) { l.Machines[0].CPUs = 0 }, "machines[0].cpus"},
		{"memory", func(l *KubeVirtLab) { l.Machines[0].MemoryMiB = 64 }, "machines[0].memoryMiB"},
		{"firmware", func(l *KubeVirtLab) { l.Machines[0].Firmware = "none" }, "machines[0].firmware"},
		{"tag, no digest", func(l *KubeVirtLab) { l.Machines[0].Image = "ghcr.io/acme/labbake-master:v1" }, "machines[0].image: \"ghcr.io/acme/labbake-master:v1\" is not by digest"},
		{"short digest", func(l *KubeVirtLab) { l.Machines[0].Image = "ghcr.io/acme/labbake-master@sha256:abc" }, "machines[0].image"},
		{"lab MAC", func(l *KubeVirtLab) { l.Machines[0].LabMAC = "nope" }, "machines[0].labMAC"},
		{"MAC spelling", func(l *KubeVirtLab) { l.Machines[0].LabMAC = strings.ToUpper(l.Machines[0].LabMAC) }, "write it as"},
		{"multicast MAC", func(l *KubeVirtLab) { l.Machines[0].LabMAC = "53:54:00:00:00:01" }, "multicast"},
		{"same MAC twice", func(l *KubeVirtLab) { l.Machines[1].UplinkMAC = l.Machines[0].LabMAC }, "is also master's labMAC"},
		{"seed of another machine", func(l *KubeVirtLab) { l.Machines[0].NetworkConfig = l.Machines[1].NetworkConfig }, "machines[0].networkConfig: it matches the NICs with MACs"},
		{"seed without uplink", func(l *KubeVirtLab) {
			nc := string(l.Machines[0].NetworkConfig)
			l.Machines[0].NetworkConfig = []byte(nc[:strings.Index(nc, "  uplink0:")])
		}, "machines[0].networkConfig"},
		{"no network-config", func(l *KubeVirtLab) { l.Machines[0].NetworkConfig = nil }, "machines[0].networkConfig: empty"},
		{"not YAML", func(l *KubeVirtLab) { l.Machines[0].NetworkConfig = []byte("\t: [") }, "not a network-config"},
		{"no user-data", func(l *KubeVirtLab) { l.Machines[1].UserData = nil }, "machines[1].userData: empty"},
		{"too big for a Secret", func(l *KubeVirtLab) { l.Machines[1].UserData = bytes.Repeat([]byte("x"), maxSecretBytes) }, "more than a Secret holds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := kubeVirtLab()
			tc.change(&l)
			_, err := KubeVirt(l)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one with %q", err, tc.want)
			}
		})
	}
}

// Strings that a YAML 1.1 reader (go-yaml v2 under sigs.k8s.io/yaml, as
// kubectl reads manifests; PyYAML) would take for numbers, booleans or
// null come back as the same strings.
func TestMarshalYAMLQuotes(t *testing.T) {
	in := map[string]string{}
	for i, s := range []string{"52:54:00:12:34:56", "52:54:12:34:56:58", "12:30", "on", "yes", "N", "1e3", "0755", "0x1f", "null", "~", "", "true", "1.5", "-", "2048Mi", "it's", "a\nb", `{"a":"b"}`, "a: b", "a #b", "ghcr.io/a/b@sha256:00", "Y", "Off", "labbake/lab"} {
		in[fmt.Sprint("k", i)] = s
	}
	b, err := marshalYAML(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, unmarshal := range []func([]byte, any) error{func(b []byte, v any) error { return yaml.Unmarshal(b, v) }, yamlv3.Unmarshal} {
		var out map[string]any
		if err := unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		for k, v := range in {
			if out[k] != v {
				t.Errorf("%q came back as %#v:\n%s", v, out[k], b)
			}
		}
	}
	if !bytes.Contains(b, []byte("k15: '2048Mi'\n")) || !bytes.Contains(b, []byte("k24: labbake/lab\n")) {
		t.Errorf("quoted where it need not, or not where it must:\n%s", b)
	}
}
