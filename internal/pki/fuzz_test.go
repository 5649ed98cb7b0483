package pki

import (
	"bytes"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds the readers of the PKI directory's files arbitrary bytes:
// they must not panic, and what they accept must read back the same.
func FuzzParse(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "pki")
	if _, err := Ensure(dir, testSpec()); err != nil {
		f.Fatal(err)
	}
	for _, name := range []string{"ca.crt", "ca.key", "apiserver.crt", "sa.pub", "sa.key", "ssh/id_ed25519", "ssh/id_ed25519.pub"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := parseCertPEM(data); err == nil {
			again, err := parseCertPEM(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
			if err != nil || !bytes.Equal(again.Raw, c.Raw) {
				t.Errorf("a certificate does not read back: %v", err)
			}
		}
		if k, err := parseKeyPEM(data); err == nil && k.Curve == nil {
			t.Error("a key without a curve")
		}
		_, _ = parsePublicKeyPEM(data)
		_, _ = parseSSHPair(data, data)
	})
}
