package pki

import (
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ExpiryWarning is how close to its end a certificate is reported as
// expiring.
const ExpiryWarning = 30 * 24 * time.Hour

// CertInfo describes one certificate of the PKI directory.
type CertInfo struct {
	File      string // relative to the PKI directory, slash-separated
	Subject   string // as RFC 2253 spells it: "CN=system:node:n1,O=system:nodes"
	Issuer    string
	DNSNames  []string
	IPs       []netip.Addr
	IsCA      bool
	NotBefore time.Time
	NotAfter  time.Time
	// Expiring is NotAfter within ExpiryWarning of the time of Status (or
	// already past, then Expired is set too).
	Expiring bool
	Expired  bool
}

// SANs are DNSNames then IPs, as text.
func (c CertInfo) SANs() []string {
	out := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPs {
		out = append(out, ip.String())
	}
	return out
}

// Status lists every certificate (*.crt) in the PKI directory dir, sorted
// by file name, and says which expire within ExpiryWarning from now.
func Status(dir string) ([]CertInfo, error) { return statusAt(dir, time.Now()) }

func statusAt(dir string, now time.Time) ([]CertInfo, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	var out []CertInfo
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(d.Name(), ".crt") {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		cert, err := parseCertPEM(data)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		info := CertInfo{
			File:      filepath.ToSlash(rel),
			Subject:   cert.Subject.String(),
			Issuer:    cert.Issuer.String(),
			DNSNames:  cert.DNSNames,
			IsCA:      cert.IsCA,
			NotBefore: cert.NotBefore,
			NotAfter:  cert.NotAfter,
			Expiring:  !now.Add(ExpiryWarning).Before(cert.NotAfter),
			Expired:   !now.Before(cert.NotAfter),
		}
		for _, ip := range cert.IPAddresses {
			a, _ := netip.AddrFromSlice(ip)
			info.IPs = append(info.IPs, a.Unmap())
		}
		out = append(out, info)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pki: status: %w", err)
	}
	return out, nil
}
