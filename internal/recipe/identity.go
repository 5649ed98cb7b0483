package recipe

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/labbake/labbake/internal/macaddr"
)

// SSH is lab.yaml's `ssh:`: who may log in to the lab's machines. With no
// authorized keys labbake makes a lab key pair (OUT/pki/ssh/id_ed25519).
type SSH struct {
	// AuthorizedKeys are OpenSSH public keys, one a line as in
	// authorized_keys, read from the literal keys and .pub files listed.
	AuthorizedKeys []string
	Pos            Pos
}

// Network modes (network.mode): how `labbake up` connects the machines.
const (
	ModeAuto   = "auto"   // bridge when the bridge exists on the host, user otherwise
	ModeBridge = "bridge" // taps on the host bridge (the original set-up; needs the host kit)
	ModeUser   = "user"   // no root: a user-mode NIC each plus one shared L2 segment
)

// maxPubKeyFile bounds a .pub file listed under ssh.authorized_keys.
const maxPubKeyFile = 64 << 10

func (d *decoder) decodeSSH(l *Lab, n *yaml.Node) SSH {
	s := SSH{}
	if n == nil {
		return s
	}
	s.Pos = d.pos(n)
	f, ok := d.mapping(n, "ssh", "authorized_keys")
	if !ok {
		return s
	}
	items, ok := d.sequence(f.get("authorized_keys"), "ssh.authorized_keys")
	if !ok {
		return s
	}
	for i, item := range items {
		path := indexPath("ssh.authorized_keys", i)
		v, ok := d.str(item, path)
		if !ok {
			continue
		}
		keys, err := authorizedKeys(l.Dir, v)
		if err != nil {
			d.errorf(item, path, "%v", err)
			continue
		}
		s.AuthorizedKeys = append(s.AuthorizedKeys, keys...)
	}
	return s
}

// authorizedKeys reads one entry of ssh.authorized_keys: a public key
// itself, or the path of a .pub file (relative to the lab dir, absolute, or
// under ~/). A public key is not a secret, so unlike recipe inputs the file
// may live outside the lab dir (~/.ssh/id_ed25519.pub is the usual one);
// whatever it holds must parse as public keys, so no other file's content
// can reach a seed through it.
func authorizedKeys(labDir, v string) ([]string, error) {
	v = strings.TrimSpace(v)
	if looksLikeKey(v) {
		if err := checkPublicKey(v); err != nil {
			return nil, err
		}
		return []string{v}, nil
	}
	if !strings.HasSuffix(v, ".pub") {
		return nil, fmt.Errorf("%q is neither an OpenSSH public key (ssh-ed25519 AAAA…) nor a .pub file", short(v))
	}
	p := v
	switch {
	case strings.HasPrefix(p, "~/"):
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v, err)
		}
		p = filepath.Join(home, p[2:])
	case !filepath.IsAbs(p):
		p = filepath.Join(labDir, filepath.FromSlash(p))
	}
	st, err := os.Stat(p)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is v, said already
		}
		return nil, fmt.Errorf("reading %s: %w", v, err)
	}
	if !st.Mode().IsRegular() || st.Size() > maxPubKeyFile {
		return nil, fmt.Errorf("%s is not a public key file (a regular file under 64 KiB)", v)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", v, err)
	}
	var keys []string
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := checkPublicKey(line); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", v, i+1, err)
		}
		keys = append(keys, line)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no public key", v)
	}
	return keys, nil
}

var keyTypes = []string{
	"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
	"sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
}

func looksLikeKey(v string) bool {
	for _, t := range keyTypes {
		if strings.HasPrefix(v, t+" ") {
			return true
		}
	}
	return false
}

// checkPublicKey checks one authorized_keys line without options: a known
// key type, then base64 whose wire format starts with that same type, then
// an optional comment. It refuses private keys outright.
func checkPublicKey(line string) error {
	if strings.Contains(line, "PRIVATE KEY") {
		return fmt.Errorf("this is a private key: list the .pub file")
	}
	fields := strings.Fields(line)
	if len(fields) < 2 || !looksLikeKey(line) {
		return fmt.Errorf("%q is not an OpenSSH public key (type, base64, optional comment)", short(line))
	}
	blob, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil {
		return fmt.Errorf("%s key: its base64 does not decode", fields[0])
	}
	if len(blob) < 4 {
		return fmt.Errorf("%s key: too short", fields[0])
	}
	n := binary.BigEndian.Uint32(blob)
	if int64(n) > int64(len(blob)-4) || !bytes.Equal(blob[4:4+n], []byte(fields[0])) {
		return fmt.Errorf("%s key: its encoded type does not match", fields[0])
	}
	return nil
}

func short(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

// checkMACs reports machines whose derived MACs collide (CRC32 of the name).
// at maps a node name to the YAML node of that name.
func (d *decoder) checkMACs(at map[string]*yaml.Node, nodes []Node) {
	names := make([]string, 0, len(nodes))
	for _, n := range nodes {
		if at[n.Name] != nil {
			names = append(names, n.Name)
		}
	}
	for _, c := range macaddr.Collisions(names) {
		d.errorf(at[c.Second], "nodes", "%v", c)
	}
}

// MAC is the node's lab NIC address, derived from its name.
func (n Node) MAC() string { return macaddr.String(n.Name) }

// FQDN is the node's name in the lab's DNS domain.
func (l *Lab) FQDN(n Node) string { return n.Name + "." + l.Network.DNSDomain }

// Node returns the node called name.
func (l *Lab) Node(name string) (Node, bool) {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// decodeIdentity reads network.mode and network.dns_domain.
func (d *decoder) decodeIdentity(f fields, ok bool, lab *Lab) {
	mode := d.netField(f, "mode", ModeAuto)
	dns := d.netField(f, "dns_domain", lab.Name+".internal")
	lab.Network.Mode, lab.Network.DNSDomain = mode.value, dns.value
	if !ok {
		return
	}
	switch mode.value {
	case ModeAuto, ModeBridge, ModeUser:
	default:
		d.errorf(mode.at, "network.mode", "mode %q: want auto, bridge or user", mode.value)
	}
	if dns.given && !domainRe.MatchString(dns.value) {
		d.errorf(dns.at, "network.dns_domain", "dns_domain %q is not a DNS name", dns.value)
	}
}
