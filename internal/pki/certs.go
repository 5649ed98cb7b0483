package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Validity of what is issued. Certificates start 5 minutes before Spec.Now
// so a guest whose clock lags the host's a little still accepts them.
const (
	caValidityYears   = 10
	leafValidityYears = 1
	backdate          = 5 * time.Minute
)

// The lab's authorities, by their base name in the PKI directory (and, as
// on a control-plane machine, under /etc/kubernetes/pki).
const (
	kubernetesCA = "ca"
	frontProxyCA = "front-proxy-ca"
	etcdCA       = "etcd/ca"
)

// authorities are the CAs in the order they are made, with the common
// names of "PKI certificates and requirements".
var authorities = []struct{ name, cn string }{
	{kubernetesCA, "kubernetes-ca"},
	{etcdCA, "etcd-ca"},
	{frontProxyCA, "kubernetes-front-proxy-ca"},
}

// Identities the components are known by (user names and groups the API
// server's authorizers and built-in RBAC bindings expect).
const (
	// KubeletClientGroup is the group of the API server's client
	// certificate to the kubelets. It is not system:masters (which no
	// authorizer can restrict): the group must be bound to a ClusterRole
	// that allows nodes/proxy and the other kubelet API subresources, see
	// ClusterAdminsBinding.
	KubeletClientGroup = "kubeadm:cluster-admins"
	// MastersGroup is the super-user group of the admin kubeconfig: it
	// works before any RBAC object exists.
	MastersGroup = "system:masters"
	// NodesGroup and the user name system:node:NAME are what the Node
	// authorizer and the NodeRestriction admission plugin recognize.
	NodesGroup = "system:nodes"
	// FrontProxyClientCN is the name kube-apiserver's
	// --requestheader-allowed-names should list.
	FrontProxyClientCN = "front-proxy-client"
)

// NodeUser is the user name of a machine's kubelet.
func NodeUser(machine string) string { return "system:node:" + machine }

// leafSpec is what one leaf certificate must say.
type leafSpec struct {
	name  string // base name in the PKI directory: "apiserver", "machines/n1/kubelet"
	ca    string // base name of its CA
	cn    string
	org   []string
	dns   []string
	ips   []netip.Addr
	usage []x509.ExtKeyUsage
}

var (
	serverUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	clientUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	bothUsage   = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	loopback    = netip.MustParseAddr("127.0.0.1")
)

// machineDir is where a machine's own files are kept in the PKI directory.
func machineDir(name string) string { return "machines/" + name }

// Names of a machine's leaves.
func kubeletClientName(m string) string  { return machineDir(m) + "/kubelet-client" }
func kubeletServingName(m string) string { return machineDir(m) + "/kubelet" }
func etcdServerName(m string) string     { return machineDir(m) + "/etcd-server" }
func etcdPeerName(m string) string       { return machineDir(m) + "/etcd-peer" }

// leaves is every leaf certificate of the lab, lab-wide ones first, then
// each machine's in the order of Spec.Machines.
func (s *Spec) leaves() []leafSpec {
	dns := []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + s.ClusterDomain, "localhost"}
	ips := []netip.Addr{s.kubernetesServiceIP(), loopback}
	for _, m := range s.Machines {
		if m.ControlPlane {
			dns = append(dns, m.Name)
			ips = append(ips, m.IP)
		}
	}
	out := []leafSpec{
		{name: "apiserver", ca: kubernetesCA, cn: "kube-apiserver", dns: dns, ips: ips, usage: serverUsage},
		{name: "apiserver-kubelet-client", ca: kubernetesCA, cn: "kube-apiserver-kubelet-client", org: []string{KubeletClientGroup}, usage: clientUsage},
		{name: "apiserver-etcd-client", ca: etcdCA, cn: "kube-apiserver-etcd-client", usage: clientUsage},
		{name: "front-proxy-client", ca: frontProxyCA, cn: FrontProxyClientCN, usage: clientUsage},
		{name: "admin", ca: kubernetesCA, cn: "kubernetes-admin", org: []string{MastersGroup}, usage: clientUsage},
		{name: "controller-manager", ca: kubernetesCA, cn: "system:kube-controller-manager", usage: clientUsage},
		{name: "scheduler", ca: kubernetesCA, cn: "system:kube-scheduler", usage: clientUsage},
		{name: "kube-proxy", ca: kubernetesCA, cn: "system:kube-proxy", usage: clientUsage},
	}
	for _, m := range s.Machines {
		out = append(out,
			leafSpec{name: kubeletClientName(m.Name), ca: kubernetesCA, cn: NodeUser(m.Name), org: []string{NodesGroup}, usage: clientUsage},
			// As the kubelet would ask for one from the kubelet-serving
			// signer: the node's user and group, its name and address.
			leafSpec{name: kubeletServingName(m.Name), ca: kubernetesCA, cn: NodeUser(m.Name), org: []string{NodesGroup},
				dns: []string{m.Name}, ips: []netip.Addr{m.IP}, usage: serverUsage},
		)
		if m.ControlPlane {
			out = append(out,
				leafSpec{name: etcdServerName(m.Name), ca: etcdCA, cn: m.Name,
					dns: []string{m.Name, "localhost"}, ips: []netip.Addr{m.IP, loopback}, usage: bothUsage},
				leafSpec{name: etcdPeerName(m.Name), ca: etcdCA, cn: m.Name,
					dns: []string{m.Name}, ips: []netip.Addr{m.IP}, usage: bothUsage},
			)
		}
	}
	return out
}

// pair is a certificate with its private key, parsed and as PEM.
type pair struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	keyPEM  []byte
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: making an ECDSA P-256 key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: encoding an ECDSA key: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// sign makes a certificate from tmpl for a new key, signed by parent (nil:
// self-signed). The serial number is random (x509.CreateCertificate makes
// one when the template has none).
func sign(tmpl *x509.Certificate, parent *pair) (*pair, error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, err
	}
	issuer, signer := tmpl, key
	if parent != nil {
		issuer, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, signer)
	if err != nil {
		return nil, fmt.Errorf("pki: signing %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: reading back %q: %w", tmpl.Subject.CommonName, err)
	}
	return &pair{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM: keyPEM}, nil
}

func newCA(cn string, now time.Time) (*pair, error) {
	start := now.Add(-backdate).UTC().Truncate(time.Second)
	return sign(&x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             start,
		NotAfter:              start.AddDate(caValidityYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil)
}

// issue signs a new key for l with ca. A leaf never outlives its CA.
func issue(l leafSpec, ca *pair, now time.Time) (*pair, error) {
	start := now.Add(-backdate).UTC().Truncate(time.Second)
	end := start.AddDate(leafValidityYears, 0, 0)
	if end.After(ca.cert.NotAfter) {
		end = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: l.cn, Organization: l.org},
		NotBefore:             start,
		NotAfter:              end,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           l.usage,
		BasicConstraintsValid: true,
		DNSNames:              l.dns,
	}
	for _, ip := range l.ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.AsSlice()))
	}
	return sign(tmpl, ca)
}

// diff says how cert differs from what l asks for ("" when it does not).
func (l leafSpec) diff(cert *x509.Certificate) string {
	var d []string
	if cert.Subject.CommonName != l.cn {
		d = append(d, fmt.Sprintf("CN %q → %q", cert.Subject.CommonName, l.cn))
	}
	if !sameSet(cert.Subject.Organization, l.org) {
		d = append(d, fmt.Sprintf("O %v → %v", cert.Subject.Organization, l.org))
	}
	if have, want := certSANs(cert), specSANs(l); !sameSet(have, want) {
		d = append(d, fmt.Sprintf("SANs [%s] → [%s]", strings.Join(have, " "), strings.Join(want, " ")))
	}
	if !sameSet(usageNames(cert.ExtKeyUsage), usageNames(l.usage)) {
		d = append(d, fmt.Sprintf("extended key usage %v → %v", usageNames(cert.ExtKeyUsage), usageNames(l.usage)))
	}
	if cert.KeyUsage != x509.KeyUsageDigitalSignature || cert.IsCA {
		d = append(d, "key usage is not that of a leaf")
	}
	return strings.Join(d, ", ")
}

func certSANs(c *x509.Certificate) []string {
	out := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		a, _ := netip.AddrFromSlice(ip)
		out = append(out, a.Unmap().String())
	}
	return out
}

func specSANs(l leafSpec) []string {
	out := slices.Clone(l.dns)
	for _, ip := range l.ips {
		out = append(out, ip.Unmap().String())
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func usageNames(u []x509.ExtKeyUsage) []string {
	var out []string
	for _, x := range u {
		switch x {
		case x509.ExtKeyUsageServerAuth:
			out = append(out, "server")
		case x509.ExtKeyUsageClientAuth:
			out = append(out, "client")
		default:
			out = append(out, fmt.Sprintf("usage-%d", x))
		}
	}
	return out
}

// parseCertPEM reads the one certificate of a PEM file.
func parseCertPEM(data []byte) (*x509.Certificate, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM data")
	}
	if block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("PEM block %q, not CERTIFICATE", block.Type)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("more than one PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

// parseKeyPEM reads an ECDSA private key (SEC 1 as written here, or
// PKCS #8 as other tools write).
func parseKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM data")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("more than one PEM block")
	}
	switch block.Type {
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		ec, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("a %T, not an ECDSA key", k)
		}
		return ec, nil
	}
	return nil, fmt.Errorf("PEM block %q, not a private key", block.Type)
}

// matches reports whether key is the private half of cert's public key.
func matches(cert *x509.Certificate, key *ecdsa.PrivateKey) bool {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	return ok && key.PublicKey.Equal(pub)
}
