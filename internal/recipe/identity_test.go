package recipe

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const (
	edKey    = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAU2iGJzmFdeMyxJtiMc+moLDy6dbLAGGNlTOQlHtPD/ test@lab"
	ecdsaKey = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBHbD52NfkyRJClKUOd2sak6L3yXm0W6pKqLyfAGJWUVIKzTHK/jUEBZRMvspeNIBPKyA1NcQiLV3oykmzexhmmo= e"
)

func TestIdentityKeys(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".ssh", "id.pub"), []byte(ecdsaKey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, ssh string
		files     map[string]string
		want      []string
	}{
		{name: "none", ssh: "", want: nil},
		{name: "literal", ssh: "ssh: {authorized_keys: [\"" + edKey + "\"]}\n", want: []string{edKey}},
		{name: "pub file in the lab, comments and blank lines skipped",
			ssh:   "ssh: {authorized_keys: [keys/team.pub]}\n",
			files: map[string]string{"keys/team.pub": "# the team\n" + edKey + "\n\n" + ecdsaKey + "\n"},
			want:  []string{edKey, ecdsaKey}},
		{name: "under home", ssh: "ssh: {authorized_keys: [~/.ssh/id.pub]}\n", want: []string{ecdsaKey}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for p, c := range tc.files {
				mustWrite(t, filepath.Join(dir, p), c)
			}
			mustWrite(t, filepath.Join(dir, "lab.yaml"), "name: keys\n"+tc.ssh+"nodes:\n  - {name: master, role: master, ip: 172.18.0.2}\n")
			lab, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(lab.SSH.AuthorizedKeys, tc.want) {
				t.Errorf("authorized keys = %q, want %q", lab.SSH.AuthorizedKeys, tc.want)
			}
			n, _ := lab.Node("master")
			if n.MAC() != "52:54:2d:09:a3:d6" || lab.FQDN(n) != "master.keys.internal" || lab.Network.Mode != ModeAuto {
				t.Errorf("MAC %s, FQDN %s, mode %s", n.MAC(), lab.FQDN(n), lab.Network.Mode)
			}
		})
	}
}

func TestCheckPublicKey(t *testing.T) {
	for _, tc := range []struct {
		line, err string
	}{
		{edKey, ""},
		{ecdsaKey, ""},
		{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAU2iGJzmFdeMyxJtiMc+moLDy6dbLAGGNlTOQlHtPD/", ""},
		{"ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIAU2iGJzmFdeMyxJtiMc+moLDy6dbLAGGNlTOQlHtPD/", "does not match"},
		{"ssh-ed25519", "not an OpenSSH public key"},
		{"ssh-dss AAAAB3NzaC1kc3M=", "not an OpenSSH public key"},
		{"ssh-ed25519 AAAA", "too short"},
		{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAU2iG\xff", "does not decode"},
		{"-----BEGIN OPENSSH PRIVATE KEY-----", "private key"},
	} {
		err := checkPublicKey(tc.line)
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("checkPublicKey(%q) = %v, want %q", tc.line, err, tc.err)
		}
	}
}

func mustWrite(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
