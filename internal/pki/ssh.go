package pki

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Where SSH keys are kept in the PKI directory.
const (
	labKeyName = "ssh/id_ed25519"
	hostKeyExt = "/ssh_host_ed25519_key"
)

func hostKeyName(machine string) string { return machineDir(machine) + hostKeyExt }

// sshPair is an ed25519 key pair: the private key in OpenSSH format and
// the public key as an authorized_keys line (newline-terminated).
type sshPair struct {
	private []byte
	public  []byte
	key     ssh.PublicKey
}

func newSSHKey(comment string) (*sshPair, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: making an ed25519 key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, fmt.Errorf("pki: encoding an ed25519 key: %w", err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("pki: encoding an ed25519 key: %w", err)
	}
	return &sshPair{private: pem.EncodeToMemory(block), public: authorizedLine(key, comment), key: key}, nil
}

func authorizedLine(key ssh.PublicKey, comment string) []byte {
	line := bytes.TrimSuffix(ssh.MarshalAuthorizedKey(key), []byte("\n"))
	if comment != "" {
		line = append(line, ' ')
		line = append(line, comment...)
	}
	return append(line, '\n')
}

// parseSSHPair checks that the two files of a key pair belong together.
func parseSSHPair(private, public []byte) (*sshPair, error) {
	raw, err := ssh.ParseRawPrivateKey(private)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	priv, ok := raw.(*ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key is a %T, not ed25519", raw)
	}
	key, _, _, rest, err := ssh.ParseAuthorizedKey(public)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("public key file holds more than one key")
	}
	want, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	if !bytes.Equal(want.Marshal(), key.Marshal()) {
		return nil, errors.New("the public key is not that of the private key")
	}
	return &sshPair{private: private, public: public, key: key}, nil
}

// HostKey returns a machine's SSH host key pair for the ssh_keys of its
// cloud-config (ed25519_private, ed25519_public): the private key in
// OpenSSH format and the public key line. Both are empty for a machine
// that is not in the lab.
func (p *PKI) HostKey(name string) (private, public string) {
	k, ok := p.hostKeys[name]
	if !ok {
		return "", ""
	}
	return string(k.private), strings.TrimSuffix(string(k.public), "\n")
}

// AuthorizedKeys are the keys that may log in to every machine:
// Spec.AuthorizedKeys when given, else the lab key's public half.
func (p *PKI) AuthorizedKeys() []string {
	if p.labKey == nil {
		return slices.Clone(p.spec.AuthorizedKeys)
	}
	return []string{strings.TrimSuffix(string(p.labKey.public), "\n")}
}

// LabKeyPath is the lab's private SSH key file in the PKI directory, ""
// when Spec.AuthorizedKeys replace it.
func (p *PKI) LabKeyPath() string {
	if p.labKey == nil {
		return ""
	}
	return store{p.dir}.path(labKeyName)
}

// KnownHosts is a known_hosts file naming every machine by "NAME,IP", one
// line per machine, sorted by name.
func (p *PKI) KnownHosts() []byte {
	var b bytes.Buffer
	for _, m := range p.sortedMachines() {
		b.WriteString(knownHostsLine(m.Name+","+m.IP.String(), p.hostKeys[m.Name].key))
	}
	return b.Bytes()
}

// KnownHostsForwarded is a known_hosts file for machines reached through
// ports forwarded on the host: "[127.0.0.1]:PORT" for each machine in
// ports (name → port), sorted by name.
func (p *PKI) KnownHostsForwarded(ports map[string]int) ([]byte, error) {
	var b bytes.Buffer
	names := make([]string, 0, len(ports))
	for n := range ports {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		k, ok := p.hostKeys[n]
		if !ok {
			return nil, fmt.Errorf("pki: known_hosts: no machine %q in the lab", n)
		}
		port := ports[n]
		if port < 1 || port > 65535 {
			return nil, fmt.Errorf("pki: known_hosts: machine %q: port %d out of range", n, port)
		}
		host := netip.AddrPortFrom(loopback, uint16(port))
		b.WriteString(knownHostsLine("["+host.Addr().String()+"]:"+strconv.Itoa(int(host.Port())), k.key))
	}
	return b.Bytes(), nil
}

func knownHostsLine(hosts string, key ssh.PublicKey) string {
	return hosts + " " + string(ssh.MarshalAuthorizedKey(key))
}
