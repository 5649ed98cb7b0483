package kit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// KubeVirtDir is the KubeVirt kit's directory in the output dir's kit
// directory (OUT/kit/kubevirt).
const KubeVirtDir = "kubevirt"

// KubeVirt kit files besides the per-machine ones (vm-NAME.yaml,
// secret-NAME.yaml).
const (
	KubeVirtKustomization = "kustomization.yaml"
	KubeVirtNetworkFile   = "network.yaml"
	KubeVirtREADME        = "README"
)

// Labels the KubeVirt kit puts on every object: the lab, and on a
// machine's objects its role and name.
const (
	LabelLab     = "labbake/lab"
	LabelRole    = "labbake/role"
	LabelMachine = "labbake/machine"
	labelPartOf  = "app.kubernetes.io/part-of"
)

// KubeVirtLab is what the KubeVirt kit is made from.
type KubeVirtLab struct {
	Name string // the lab's name: labels, the VMs' subdomain
	// Network is the Multus NetworkAttachmentDefinition carrying the lab
	// segment: a bridge of that name on each Kubernetes node, no IPAM.
	Network  KubeVirtNetwork
	Machines []KubeVirtMachine
}

// KubeVirtNetwork is the lab segment on the cluster.
type KubeVirtNetwork struct {
	Name   string // the NetworkAttachmentDefinition's name
	Bridge string // the Linux bridge on each Kubernetes node
}

// KubeVirtMachine is one VirtualMachine of the lab.
type KubeVirtMachine struct {
	Name      string // the VM's name and host name
	Role      string
	CPUs      int
	MemoryMiB int64
	Firmware  string // FirmwareUEFI or FirmwareBIOS: how the role's image boots
	// LabMAC is the lab NIC's MAC (macaddr.String(Name)); UplinkMAC the pod
	// network NIC's (UplinkMAC(Name)). The seed's network-config matches
	// the NICs by them, so they must be the ones it names.
	LabMAC, UplinkMAC string
	// Image is the role's containerDisk by digest:
	// REPOSITORY@sha256:<64 hex>, e.g. ghcr.io/acme/labbake-node@sha256:….
	Image string
	// UserData and NetworkConfig are the machine's seed documents,
	// exactly as builders/seed renders them; they go into its Secret only.
	UserData, NetworkConfig []byte
}

// SecretName is the name of the Secret holding a machine's seed.
func SecretName(machine string) string { return machine + "-seed" }

// SecretFile and VMFile are the kit files of a machine's Secret and
// VirtualMachine.
func SecretFile(machine string) string { return "secret-" + machine + ".yaml" }
func VMFile(machine string) string     { return "vm-" + machine + ".yaml" }

// KubeVirtFileMode is the mode a KubeVirt kit file is written with: 0600
// for the Secrets (they hold the machines' private keys), 0644 for the
// others.
func KubeVirtFileMode(name string) fs.FileMode {
	if strings.HasPrefix(name, "secret-") {
		return 0o600
	}
	return 0o644
}

// IsKubeVirtMachineFile reports whether name is a per-machine file of a
// KubeVirt kit (of this lab or of an earlier one written to the same
// directory): what a writer removes when the lab no longer has its machine.
func IsKubeVirtMachineFile(name string) bool {
	return (strings.HasPrefix(name, "vm-") || strings.HasPrefix(name, "secret-")) &&
		strings.HasSuffix(name, ".yaml") && !strings.Contains(name, "/")
}

var (
	// dnsLabel is an RFC 1123 label, as Kubernetes names most objects.
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	// imageRef is REPOSITORY@sha256:HEX in the grammar of
	// distribution/reference: an optional registry (host and port), then
	// lower-case path components; no tag.
	imageRef = regexp.MustCompile(`^` +
		`(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?/)?` +
		`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*` +
		`@sha256:[0-9a-f]{64}$`)
)

// maxSecretBytes is the most a Secret may hold (its data together).
const maxSecretBytes = 1 << 20

// maxRepositoryLen is the longest repository name a registry takes.
const maxRepositoryLen = 255

// ValidImageRef reports why ref is not REPOSITORY@sha256:<64 hex>, or nil.
func ValidImageRef(ref string) error {
	repo, _, _ := strings.Cut(ref, "@")
	switch {
	case !strings.Contains(ref, "@sha256:"):
		return fmt.Errorf("%q is not by digest: want REPOSITORY@sha256:<64 hex>", ref)
	case !imageRef.MatchString(ref):
		return fmt.Errorf("%q is not REPOSITORY@sha256:<64 hex> (a lower-case repository, optionally behind a registry host; no tag)", ref)
	case len(repo) > maxRepositoryLen:
		return fmt.Errorf("%q: repository longer than %d characters", ref, maxRepositoryLen)
	}
	return nil
}

// ValidRepository reports why repo is not a repository name an image
// reference can start with (no tag, no digest), or nil.
func ValidRepository(repo string) error {
	if err := ValidImageRef(repo + "@sha256:" + strings.Repeat("0", 64)); err != nil {
		return fmt.Errorf("%q is not a repository (lower-case path components, optionally behind a registry host; no tag)", repo)
	}
	return nil
}

// Validate reports every problem of the KubeVirt lab at once, each naming
// its field. KubeVirt expects a lab that passes it.
func (l KubeVirtLab) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	label := func(field, s string) bool {
		if !dnsLabel.MatchString(s) {
			bad(field, "%q is not a DNS-1123 label (1-63 lower-case letters, digits and inner -)", s)
			return false
		}
		return true
	}
	label("name", l.Name)
	label("network.name", l.Network.Name)
	if !ifname.MatchString(l.Network.Bridge) {
		bad("network.bridge", "%q is not an interface name (1-15 of A-Z a-z 0-9 _ . -)", l.Network.Bridge)
	}
	if len(l.Machines) == 0 {
		bad("machines", "none")
	}
	names := map[string]int{}
	macs := map[string]string{}
	for i, m := range l.Machines {
		f := func(name string) string { return fmt.Sprintf("machines[%d].%s", i, name) }
		if label(f("name"), m.Name) {
			if j, ok := names[m.Name]; ok {
				bad(f("name"), "%q is also machines[%d]", m.Name, j)
			}
			names[m.Name] = i
		}
		label(f("role"), m.Role)
		if m.CPUs < 1 || m.CPUs > 255 {
			bad(f("cpus"), "%d is not 1 to 255", m.CPUs)
		}
		if m.MemoryMiB < 128 {
			bad(f("memoryMiB"), "%d is less than 128", m.MemoryMiB)
		}
		if m.Firmware != FirmwareUEFI && m.Firmware != FirmwareBIOS {
			bad(f("firmware"), "%q must be %q or %q", m.Firmware, FirmwareUEFI, FirmwareBIOS)
		}
		for _, nic := range []struct{ field, mac string }{{"labMAC", m.LabMAC}, {"uplinkMAC", m.UplinkMAC}} {
			hw, err := net.ParseMAC(nic.mac)
			switch {
			case err != nil || len(hw) != 6:
				bad(f(nic.field), "%q is not a MAC address", nic.mac)
			case hw.String() != nic.mac:
				bad(f(nic.field), "%q: write it as %s (lower case, colons)", nic.mac, hw)
			case hw[0]&1 != 0:
				bad(f(nic.field), "%s is a multicast address", nic.mac)
			default:
				if other, ok := macs[nic.mac]; ok {
					bad(f(nic.field), "%s is also %s", nic.mac, other)
				} else {
					macs[nic.mac] = fmt.Sprintf("%s's %s", m.Name, nic.field)
				}
			}
		}
		if err := ValidImageRef(m.Image); err != nil {
			bad(f("image"), "%v", err)
		}
		if len(m.UserData) == 0 {
			bad(f("userData"), "empty")
		}
		if len(m.NetworkConfig) == 0 {
			bad(f("networkConfig"), "empty")
		} else if err := seedMatchesMACs(m.NetworkConfig, m.LabMAC, m.UplinkMAC); err != nil {
			bad(f("networkConfig"), "%v", err)
		}
		if n := len(m.UserData) + len(m.NetworkConfig); n > maxSecretBytes {
			bad(f("userData"), "the seed is %d bytes, more than a Secret holds (%d)", n, maxSecretBytes)
		}
	}
	return errors.Join(errs...)
}

// seedMatchesMACs checks that a seed's network-config matches exactly the
// VM's two NICs by MAC: a VM whose MACs the seed does not name boots with
// no lab address.
func seedMatchesMACs(networkConfig []byte, want ...string) error {
	var nc struct {
		Ethernets map[string]struct {
			Match struct {
				MACAddress string `yaml:"macaddress"`
			} `yaml:"match"`
		} `yaml:"ethernets"`
	}
	if err := yaml.Unmarshal(networkConfig, &nc); err != nil {
		return fmt.Errorf("not a network-config: %v", err)
	}
	var got []string
	for _, e := range nc.Ethernets {
		if hw, err := net.ParseMAC(e.Match.MACAddress); err == nil {
			got = append(got, hw.String())
		}
	}
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		return fmt.Errorf("it matches the NICs with MACs %q, the VM has %q", got, want)
	}
	return nil
}

// KubeVirt returns the files of the KubeVirt kit by name (no directories):
//
//   - network.yaml: the NetworkAttachmentDefinition of the lab segment, a
//     bridge CNI configuration without IPAM (the seeds give static
//     addresses)
//   - secret-NAME.yaml: each machine's Secret (Opaque, keys userdata and
//     networkdata: its seed's user-data and network-config); mode 0600,
//     see KubeVirtFileMode
//   - vm-NAME.yaml: each machine's VirtualMachine
//   - kustomization.yaml: all of the above, for kubectl apply -k
//   - README
//
// The output depends on l only. It fails if l does not pass Validate.
func KubeVirt(l KubeVirtLab) (map[string][]byte, error) {
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("kubevirt kit: %w", err)
	}
	out := map[string][]byte{}
	add := func(name string, v any) error {
		b, err := marshalYAML(v)
		if err != nil {
			return fmt.Errorf("kubevirt kit: %s: %w", name, err)
		}
		out[name] = b
		return nil
	}
	resources := []string{KubeVirtNetworkFile}
	if err := add(KubeVirtNetworkFile, nad(l)); err != nil {
		return nil, err
	}
	for _, m := range l.Machines {
		name := SecretFile(m.Name)
		if err := add(name, secret(l, m)); err != nil {
			return nil, err
		}
		resources = append(resources, name)
	}
	for _, m := range l.Machines {
		name := VMFile(m.Name)
		if err := add(name, virtualMachine(l, m)); err != nil {
			return nil, err
		}
		resources = append(resources, name)
	}
	if err := add(KubeVirtKustomization, kustomization{
		APIVersion: "kustomize.config.k8s.io/v1beta1",
		Kind:       "Kustomization",
		Resources:  resources,
	}); err != nil {
		return nil, err
	}
	d := kubeVirtData{
		Lab:           l,
		Underline:     strings.Repeat("=", len("labbake KubeVirt kit of the lab "+l.Name)),
		Network:       KubeVirtNetworkFile,
		Kustomization: KubeVirtKustomization,
	}
	for _, m := range l.Machines {
		d.Machines = append(d.Machines, kubeVirtMachineData{
			KubeVirtMachine: m, Secret: SecretName(m.Name),
			SecretFile: SecretFile(m.Name), VMFile: VMFile(m.Name),
		})
	}
	var readme bytes.Buffer
	if err := templates.ExecuteTemplate(&readme, "kubevirt-README.tmpl", d); err != nil {
		return nil, fmt.Errorf("kubevirt kit: %s: %w", KubeVirtREADME, err)
	}
	out[KubeVirtREADME] = readme.Bytes()
	return out, nil
}

// marshalYAML writes v as Kubernetes tools write objects: encoded as JSON
// (its json tags, []byte as base64), then as YAML in the fields' order with
// a two-space indent, a string plain only where no YAML reader can take it
// for anything else (see scalarStyle).
func marshalYAML(v any) ([]byte, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(j, &doc); err != nil {
		return nil, err
	}
	restyle(&doc)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// restyle replaces the styles JSON gave the nodes (every string
// double-quoted, every object and list in flow style): block style, and
// strings as scalarStyle says.
func restyle(n *yaml.Node) {
	n.Style = 0
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		n.Style = scalarStyle(n.Value)
	}
	for _, c := range n.Content {
		restyle(c)
	}
}

var (
	// plainSafe is a string that starts with a letter (so no number, date
	// or base-60 integer of YAML 1.1, no indicator) and holds nothing a
	// plain scalar may not.
	plainSafe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_./@+-]*(:[A-Za-z0-9_./@+-]+)*$`)
	// yaml11Words are the booleans and null of YAML 1.1 (go-yaml v2, which
	// kubectl reads manifests with, and PyYAML), in lower case.
	yaml11Words = []string{"y", "n", "yes", "no", "on", "off", "true", "false", "null"}
)

// scalarStyle is how a string is written: plain when safe, else in single
// quotes (JSON in a string reads best so), else in double quotes.
func scalarStyle(s string) yaml.Style {
	switch {
	case plainSafe.MatchString(s) && !slices.Contains(yaml11Words, strings.ToLower(s)):
		return 0
	case !strings.ContainsRune(s, '\'') && !strings.ContainsFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }):
		return yaml.SingleQuotedStyle
	}
	return yaml.DoubleQuotedStyle
}

// kubeVirtData is what the README template sees.
type kubeVirtData struct {
	Lab                    KubeVirtLab
	Underline              string
	Network, Kustomization string
	Machines               []kubeVirtMachineData
}

type kubeVirtMachineData struct {
	KubeVirtMachine
	Secret, SecretFile, VMFile string
}

// Go structs of the objects, the fields the kit writes only; the tests
// decode the output strictly into the real API types.

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

type objectMeta struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
}

type netAttachDef struct {
	typeMeta
	Metadata objectMeta       `json:"metadata"`
	Spec     netAttachDefSpec `json:"spec"`
}

type netAttachDefSpec struct {
	Config string `json:"config"`
}

// bridgeCNI is the CNI configuration of the lab segment.
type bridgeCNI struct {
	CNIVersion string   `json:"cniVersion"`
	Type       string   `json:"type"`
	Bridge     string   `json:"bridge"`
	IPAM       struct{} `json:"ipam"`
}

type secretObj struct {
	typeMeta
	Metadata objectMeta        `json:"metadata"`
	Type     string            `json:"type"`
	Data     map[string][]byte `json:"data"`
}

type vmObj struct {
	typeMeta
	Metadata objectMeta `json:"metadata"`
	Spec     vmSpec     `json:"spec"`
}

type vmSpec struct {
	RunStrategy string     `json:"runStrategy"`
	Template    vmTemplate `json:"template"`
}

type vmTemplate struct {
	Metadata templateMeta `json:"metadata"`
	Spec     vmiSpec      `json:"spec"`
}

type templateMeta struct {
	Labels map[string]string `json:"labels"`
}

type vmiSpec struct {
	Hostname  string      `json:"hostname"`
	Subdomain string      `json:"subdomain"`
	Domain    kvDomain    `json:"domain"`
	Networks  []kvNetwork `json:"networks"`
	Volumes   []kvVolume  `json:"volumes"`
}

type kvDomain struct {
	CPU       kvCPU       `json:"cpu"`
	Resources kvResources `json:"resources"`
	Firmware  *kvFirmware `json:"firmware,omitempty"`
	Devices   kvDevices   `json:"devices"`
}

type kvCPU struct {
	Cores int `json:"cores"`
}

type kvResources struct {
	Requests map[string]string `json:"requests"`
}

type kvFirmware struct {
	Bootloader kvBootloader `json:"bootloader"`
}

type kvBootloader struct {
	EFI *kvEFI `json:"efi,omitempty"`
}

type kvEFI struct {
	SecureBoot bool `json:"secureBoot"`
}

type kvDevices struct {
	Disks      []kvDisk      `json:"disks"`
	Interfaces []kvInterface `json:"interfaces"`
}

type kvDisk struct {
	Name      string    `json:"name"`
	BootOrder int       `json:"bootOrder,omitempty"`
	Disk      kvDiskBus `json:"disk"`
}

type kvDiskBus struct {
	Bus string `json:"bus"`
}

type kvInterface struct {
	Name       string    `json:"name"`
	MACAddress string    `json:"macAddress"`
	Masquerade *struct{} `json:"masquerade,omitempty"`
	Bridge     *struct{} `json:"bridge,omitempty"`
}

type kvNetwork struct {
	Name   string    `json:"name"`
	Pod    *struct{} `json:"pod,omitempty"`
	Multus *kvMultus `json:"multus,omitempty"`
}

type kvMultus struct {
	NetworkName string `json:"networkName"`
}

type kvVolume struct {
	Name             string           `json:"name"`
	ContainerDisk    *kvContainerDisk `json:"containerDisk,omitempty"`
	CloudInitNoCloud *kvCloudInit     `json:"cloudInitNoCloud,omitempty"`
}

type kvContainerDisk struct {
	Image string `json:"image"`
}

type kvCloudInit struct {
	SecretRef            kvLocalRef `json:"secretRef"`
	NetworkDataSecretRef kvLocalRef `json:"networkDataSecretRef"`
}

type kvLocalRef struct {
	Name string `json:"name"`
}

// Names inside a VM: its disks, NICs and networks.
const (
	RootDisk      = "rootdisk"
	CloudInitDisk = "cloudinitdisk"
	PodNetwork    = "default"
	LabNetwork    = "lab"
)

func labLabels(l KubeVirtLab) map[string]string {
	return map[string]string{labelPartOf: "labbake", LabelLab: l.Name}
}

func machineLabels(l KubeVirtLab, m KubeVirtMachine) map[string]string {
	labels := labLabels(l)
	labels[LabelRole] = m.Role
	labels[LabelMachine] = m.Name
	return labels
}

func nad(l KubeVirtLab) netAttachDef {
	cfg := bridgeCNI{CNIVersion: "0.3.1", Type: "bridge", Bridge: l.Network.Bridge}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(cfg) // strings and an empty struct: cannot fail
	return netAttachDef{
		typeMeta: typeMeta{APIVersion: "k8s.cni.cncf.io/v1", Kind: "NetworkAttachmentDefinition"},
		Metadata: objectMeta{Name: l.Network.Name, Labels: labLabels(l)},
		Spec:     netAttachDefSpec{Config: strings.TrimSuffix(b.String(), "\n")},
	}
}

func secret(l KubeVirtLab, m KubeVirtMachine) secretObj {
	return secretObj{
		typeMeta: typeMeta{APIVersion: "v1", Kind: "Secret"},
		Metadata: objectMeta{Name: SecretName(m.Name), Labels: machineLabels(l, m)},
		Type:     "Opaque",
		Data:     map[string][]byte{"userdata": m.UserData, "networkdata": m.NetworkConfig},
	}
}

func virtualMachine(l KubeVirtLab, m KubeVirtMachine) vmObj {
	d := kvDomain{
		CPU:       kvCPU{Cores: m.CPUs},
		Resources: kvResources{Requests: map[string]string{"memory": strconv.FormatInt(m.MemoryMiB, 10) + "Mi"}},
		Devices: kvDevices{
			Disks: []kvDisk{
				{Name: RootDisk, BootOrder: 1, Disk: kvDiskBus{Bus: "virtio"}},
				{Name: CloudInitDisk, Disk: kvDiskBus{Bus: "virtio"}},
			},
			Interfaces: []kvInterface{
				{Name: PodNetwork, MACAddress: m.UplinkMAC, Masquerade: &struct{}{}},
				{Name: LabNetwork, MACAddress: m.LabMAC, Bridge: &struct{}{}},
			},
		},
	}
	if m.Firmware == FirmwareUEFI {
		// Secure Boot would need SMM and signed loaders; the images'
		// systemd-boot is not signed.
		d.Firmware = &kvFirmware{Bootloader: kvBootloader{EFI: &kvEFI{SecureBoot: false}}}
	}
	return vmObj{
		typeMeta: typeMeta{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine"},
		Metadata: objectMeta{Name: m.Name, Labels: machineLabels(l, m)},
		Spec: vmSpec{
			RunStrategy: "Always",
			Template: vmTemplate{
				Metadata: templateMeta{Labels: machineLabels(l, m)},
				Spec: vmiSpec{
					Hostname:  m.Name,
					Subdomain: l.Name,
					Domain:    d,
					Networks: []kvNetwork{
						{Name: PodNetwork, Pod: &struct{}{}},
						{Name: LabNetwork, Multus: &kvMultus{NetworkName: l.Network.Name}},
					},
					Volumes: []kvVolume{
						{Name: RootDisk, ContainerDisk: &kvContainerDisk{Image: m.Image}},
						{Name: CloudInitDisk, CloudInitNoCloud: &kvCloudInit{
							SecretRef:            kvLocalRef{Name: SecretName(m.Name)},
							NetworkDataSecretRef: kvLocalRef{Name: SecretName(m.Name)},
						}},
					},
				},
			},
		},
	}
}
