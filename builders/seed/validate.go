package seed

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
)

// FieldError is one problem of a Machine, naming the field.
type FieldError struct {
	Field   string // e.g. "Files[2].Path"
	Problem string
}

func (e *FieldError) Error() string { return "seed: " + e.Field + ": " + e.Problem }

// hostKeyTypes maps a HostKey.Type to the key algorithms its public key may
// have: the types cloud-init's ssh_keys takes.
var hostKeyTypes = map[string][]string{
	"ecdsa":   {ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521},
	"ed25519": {ssh.KeyAlgoED25519},
	"rsa":     {ssh.KeyAlgoRSA},
}

// Paths cloud-init manages from other keys of the seed: a File there would
// be overwritten, or would fight the setting that owns it.
var reserved = []struct{ path, owner string }{
	{"/etc/hostname", "hostname"},
	{"/etc/hosts", "manage_etc_hosts"},
	{"/root/.ssh/authorized_keys", "AuthorizedKeys"},
}

const reservedHostKeyPrefix = "/etc/ssh/ssh_host_"

// Validate reports every problem of m, joined with errors.Join, each a
// *FieldError; nil when m can be rendered.
func (m Machine) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}

	if p := labelProblem(m.Name); p != "" {
		bad("Name", "%q is not a host name: %s", m.Name, p)
	}
	switch {
	case m.FQDN == "":
		bad("FQDN", "missing")
	case !strings.HasPrefix(m.FQDN, m.Name+"."):
		bad("FQDN", "%q does not start with the machine's name %q and a dot", m.FQDN, m.Name)
	default:
		if p := domainProblem(m.FQDN); p != "" {
			bad("FQDN", "%q is not a domain name: %s", m.FQDN, p)
		}
	}

	lab, p := macProblem(m.LabMAC)
	if p != "" {
		bad("LabMAC", "%q: %s", m.LabMAC, p)
	}
	if m.UplinkMAC != "" {
		up, p := macProblem(m.UplinkMAC)
		switch {
		case p != "":
			bad("UplinkMAC", "%q: %s", m.UplinkMAC, p)
		case lab != nil && bytes.Equal(lab, up):
			bad("UplinkMAC", "%q is the lab NIC's MAC too", m.UplinkMAC)
		}
	}

	addr := m.Address.Addr()
	switch {
	case !m.Address.IsValid():
		bad("Address", "missing or invalid")
	case !addr.Is4():
		// cloud-init 22.4 renders a version-2 route to ::/0 as one to ::/64.
		bad("Address", "%s is not an IPv4 address: the lab network is IPv4", m.Address)
	case addr.IsUnspecified() || addr.IsLoopback() || addr.IsMulticast() || addr.IsLinkLocalUnicast():
		bad("Address", "%s is not a unicast address a lab machine can have", m.Address)
	case m.Address.Bits() < 31 && addr == m.Address.Masked().Addr():
		bad("Address", "%s is its network's own address; give the machine's address with the network's prefix length", m.Address)
	case m.Address.Bits() < 31 && addr == lastAddr(m.Address):
		bad("Address", "%s is its network's broadcast address", m.Address)
	}
	switch {
	case !m.Gateway.IsValid():
		bad("Gateway", "missing or invalid")
	case !m.Gateway.Is4():
		bad("Gateway", "%s is not an IPv4 address: the lab network is IPv4", m.Gateway)
	case m.Address.IsValid() && !m.Address.Masked().Contains(m.Gateway):
		bad("Gateway", "%s is not on the lab network %s", m.Gateway, m.Address.Masked())
	case m.Gateway == addr:
		bad("Gateway", "%s is the machine's own address", m.Gateway)
	}
	for i, ns := range m.Nameservers {
		if !ns.IsValid() || ns.Zone() != "" || ns.Is4In6() || ns.IsUnspecified() || ns.IsMulticast() {
			bad(fmt.Sprintf("Nameservers[%d]", i), "%q is not a nameserver address", ns.String())
		}
	}
	for i, d := range m.SearchDomains {
		if p := domainProblem(d); p != "" {
			bad(fmt.Sprintf("SearchDomains[%d]", i), "%q is not a domain name: %s", d, p)
		}
	}

	if len(m.AuthorizedKeys) == 0 {
		bad("AuthorizedKeys", "none: nobody could log in")
	}
	for i, k := range m.AuthorizedKeys {
		if p := authorizedKeyProblem(k); p != "" {
			bad(fmt.Sprintf("AuthorizedKeys[%d]", i), "%s", p)
		}
	}

	if len(m.HostKeys) == 0 {
		bad("HostKeys", "none: sshd would have no host key (the seed generates none)")
	}
	seenType := map[string]int{}
	for i, k := range m.HostKeys {
		f := fmt.Sprintf("HostKeys[%d]", i)
		if _, ok := hostKeyTypes[k.Type]; !ok {
			bad(f+".Type", "%q is not one of ecdsa, ed25519, rsa", k.Type)
			continue
		}
		if j, dup := seenType[k.Type]; dup {
			bad(f+".Type", "a second %s key (HostKeys[%d] is one)", k.Type, j)
		} else {
			seenType[k.Type] = i
		}
		for _, p := range hostKeyProblems(k) {
			bad(f+"."+p.field, "%s", p.problem)
		}
	}

	seenPath := map[string]int{}
	for i, file := range m.Files {
		f := fmt.Sprintf("Files[%d]", i)
		if p := filePathProblem(file.Path); p != "" {
			bad(f+".Path", "%q: %s", file.Path, p)
		} else if j, dup := seenPath[file.Path]; dup {
			bad(f+".Path", "%q is also Files[%d]", file.Path, j)
		} else {
			seenPath[file.Path] = i
		}
		switch {
		case file.Mode == 0:
			bad(f+".Mode", "missing (0)")
		case file.Mode > 0o7777:
			bad(f+".Mode", "%#o (%s) has bits beyond 0o7777: give permission bits as octal, setuid as 0o4000", uint32(file.Mode), file.Mode)
		}
	}
	return errors.Join(errs...)
}

// labelProblem checks a lower-case DNS label (RFC 1123, as Kubernetes wants
// node names).
func labelProblem(s string) string {
	switch {
	case s == "":
		return "empty"
	case len(s) > 63:
		return "longer than 63 characters"
	case s[0] == '-' || s[len(s)-1] == '-':
		return "starts or ends with '-'"
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Sprintf("%q is not a lower-case letter, digit or '-'", r)
		}
	}
	return ""
}

func domainProblem(s string) string {
	if len(s) > 253 {
		return "longer than 253 characters"
	}
	for _, l := range strings.Split(s, ".") {
		if p := labelProblem(l); p != "" {
			return fmt.Sprintf("label %q: %s", l, p)
		}
	}
	return ""
}

// macProblem parses a 6-byte unicast MAC.
func macProblem(s string) (net.HardwareAddr, string) {
	hw, err := net.ParseMAC(s)
	switch {
	case s == "":
		return nil, "missing"
	case err != nil || len(hw) != 6 || len(s) != 17:
		return nil, "not a MAC address like 52:54:2d:09:a3:d6"
	case hw[0]&1 != 0:
		return nil, "a multicast address"
	case bytes.Equal(hw, make(net.HardwareAddr, 6)):
		return nil, "all zeros"
	}
	return hw, ""
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	hostBits := 32 - p.Bits()
	for i := 3; i >= 0 && hostBits > 0; i-- {
		n := min(hostBits, 8)
		a[i] |= byte(1<<n - 1)
		hostBits -= n
	}
	return netip.AddrFrom4(a)
}

// textProblem refuses what cannot travel in a YAML string or a one-line
// config entry unchanged: invalid UTF-8, control characters, and the
// non-characters and line separators some YAML readers treat as breaks.
func textProblem(s string) string {
	if !utf8.ValidString(s) {
		return "not valid UTF-8"
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || r == '\ufeff' || r == utf8.RuneError {
			return fmt.Sprintf("contains the control or separator character %U", r)
		}
	}
	return ""
}

func authorizedKeyProblem(k string) string {
	k = strings.TrimSpace(k)
	if p := textProblem(k); p != "" {
		return p
	}
	_, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(k))
	switch {
	case err != nil:
		return fmt.Sprintf("not an OpenSSH public key: %v", err)
	case len(bytes.TrimSpace(rest)) != 0:
		return "more than one key in one entry"
	}
	return ""
}

type keyProblem struct{ field, problem string }

// hostKeyProblems checks that both halves parse, match each other and the
// declared type.
func hostKeyProblems(k HostKey) []keyProblem {
	var probs []keyProblem
	add := func(field, problem string) { probs = append(probs, keyProblem{field, problem}) }
	pub := strings.TrimSpace(k.Public)
	var parsed ssh.PublicKey
	if p := textProblem(pub); p != "" {
		add("Public", p)
	} else if key, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(pub)); err != nil {
		add("Public", fmt.Sprintf("not an OpenSSH public key: %v", err))
	} else if len(bytes.TrimSpace(rest)) != 0 {
		add("Public", "more than one key")
	} else if !contains(hostKeyTypes[k.Type], key.Type()) {
		add("Public", fmt.Sprintf("a %s key, not %s", key.Type(), k.Type))
	} else {
		parsed = key
	}

	if p := textProblem(strings.ReplaceAll(k.Private, "\n", "")); p != "" {
		add("Private", p)
		return probs
	}
	if !strings.HasPrefix(strings.TrimSpace(k.Private), "-----BEGIN ") {
		add("Private", "not a PEM private key")
		return probs
	}
	raw, err := ssh.ParseRawPrivateKey([]byte(k.Private))
	if err != nil {
		add("Private", fmt.Sprintf("cannot be read (sshd needs it unencrypted): %v", err))
		return probs
	}
	signer, err := ssh.NewSignerFromKey(raw)
	if err != nil {
		add("Private", fmt.Sprintf("not an SSH key: %v", err))
		return probs
	}
	if parsed != nil && !bytes.Equal(signer.PublicKey().Marshal(), parsed.Marshal()) {
		add("Private", "does not belong to Public")
	}
	return probs
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// FilePathProblem says what is wrong with p as the Path of a File, or ""
// when nothing is: what Validate reports, for callers that check a path
// before they have the Machine.
func FilePathProblem(p string) string { return filePathProblem(p) }

func filePathProblem(p string) string {
	switch {
	case p == "":
		return "empty"
	case !strings.HasPrefix(p, "/"):
		return "not absolute"
	case p == "/":
		return "the root directory is not a file"
	case path.Clean(p) != p:
		return fmt.Sprintf("not clean (%q)", path.Clean(p))
	}
	if pr := textProblem(p); pr != "" {
		return pr
	}
	for _, r := range reserved {
		if p == r.path {
			return "managed by the seed's " + r.owner
		}
	}
	if strings.HasPrefix(p, reservedHostKeyPrefix) {
		return "host keys are the seed's HostKeys"
	}
	return ""
}
