package seed

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/netip"

	"go.yaml.in/yaml/v3"
)

// Route metrics of the two NICs' default routes: the uplink's (DHCP from
// QEMU's user-mode network) is lower, so it wins when both exist.
const (
	LabRouteMetric    = 200
	UplinkRouteMetric = 100
)

// LabInterface is the name the lab NIC gets in the guest (set-name);
// UplinkInterface only names the uplink's entry in network-config: the
// NIC keeps its kernel name (see networkConfigOf).
const (
	LabInterface    = "lab0"
	UplinkInterface = "uplink0"
)

// File is a file cloud-init writes into the guest (write_files), owned by
// root:root.
type File struct {
	Path    string      // absolute and clean, e.g. /etc/kubernetes/pki/ca.crt
	Content []byte      // any bytes
	Mode    fs.FileMode // permission bits only (setuid, setgid, sticky as 0o4000, 0o2000, 0o1000); 0 is refused
}

// HostKey is one SSH host key pair in OpenSSH format.
type HostKey struct {
	Type    string // "ed25519", "ecdsa" or "rsa"
	Private string // "-----BEGIN OPENSSH PRIVATE KEY-----…", unencrypted
	Public  string // "ssh-ed25519 AAAA… comment"
}

// Machine is everything that makes a lab machine this machine.
type Machine struct {
	Name           string       // hostname, a lower-case DNS label
	FQDN           string       // Name followed by a domain, e.g. "master.mylab.internal"
	LabMAC         string       // the lab NIC's MAC, e.g. "52:54:2d:09:a3:d6" (internal/macaddr)
	Address        netip.Prefix // static IPv4 lab address with the lab network's prefix length, e.g. 172.18.100.187/16
	Gateway        netip.Addr   // the lab gateway (IPv4), inside Address's network, e.g. 172.18.0.1
	Nameservers    []netip.Addr // may be empty
	SearchDomains  []string     // may be empty
	UplinkMAC      string       // optional second NIC (QEMU user-mode networking), DHCP; "" when the machine has none
	AuthorizedKeys []string     // OpenSSH public keys (authorized_keys lines) allowed to log in as root; at least one
	HostKeys       []HostKey    // at least one, one per type
	Files          []File       // certificates, keys, kubeconfigs, /etc/network-environment …
}

// Seed holds the three documents of a machine's NoCloud seed.
type Seed struct {
	MetaData, UserData, NetworkConfig []byte
	InstanceID                        string
}

// Document is one file of the seed ISO.
type Document struct {
	Name string
	Data []byte
}

// Files returns the seed's documents in the order the ISO writer takes them:
// meta-data, network-config, user-data.
func (s *Seed) Files() []Document {
	return []Document{
		{Name: "meta-data", Data: s.MetaData},
		{Name: "network-config", Data: s.NetworkConfig},
		{Name: "user-data", Data: s.UserData},
	}
}

// Render validates m and renders its seed. A validation error joins (with
// errors.Join) one FieldError per problem, in field order.
func Render(m Machine) (*Seed, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	nc, err := marshal("", networkConfigOf(m))
	if err != nil {
		return nil, fmt.Errorf("seed: network-config: %w", err)
	}
	ud, err := marshal("#cloud-config\n", userDataOf(m))
	if err != nil {
		return nil, fmt.Errorf("seed: user-data: %w", err)
	}
	id := instanceID(m.Name, ud, nc)
	md, err := marshal("", metaData{InstanceID: q(id), LocalHostname: q(m.Name)})
	if err != nil {
		return nil, fmt.Errorf("seed: meta-data: %w", err)
	}
	return &Seed{MetaData: md, UserData: ud, NetworkConfig: nc, InstanceID: id}, nil
}

type metaData struct {
	InstanceID    qstring `yaml:"instance-id"`
	LocalHostname qstring `yaml:"local-hostname"`
}

// instanceID hashes everything the seed carries besides the instance id
// itself, each part prefixed by its length so no two seeds share an input.
func instanceID(hostname string, userData, networkConfig []byte) string {
	h := sha256.New()
	h.Write([]byte("labbake seed v1\x00"))
	for _, part := range [][]byte{[]byte(hostname), userData, networkConfig} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	return "labbake-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// marshal writes v as YAML with a two-space indent after header.
func marshal(header string, v any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(header)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// qstring is a string always written double-quoted: a plain scalar that
// YAML 1.2 (go-yaml) reads as a string may be a number, a boolean or a date
// to a YAML 1.1 reader (PyYAML, which cloud-init uses).
type qstring string

func q(s string) qstring { return qstring(s) }

func qs(ss []string) []qstring {
	out := make([]qstring, len(ss))
	for i, s := range ss {
		out[i] = qstring(s)
	}
	return out
}

func (s qstring) MarshalYAML() (any, error) {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Style: yaml.DoubleQuotedStyle, Value: string(s)}, nil
}
