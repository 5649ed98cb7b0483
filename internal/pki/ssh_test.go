package pki

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// fingerprint is the SHA256 fingerprint ssh-keygen -l prints for a file.
func fingerprint(t *testing.T, file string) string {
	t.Helper()
	out := command(t, "ssh-keygen", "-l", "-f", file)
	f := strings.Fields(out)
	if len(f) < 4 || !strings.HasPrefix(f[1], "SHA256:") || f[len(f)-1] != "(ED25519)" {
		t.Fatalf("ssh-keygen -l -f %s: %q, want an ED25519 key", file, out)
	}
	return f[1]
}

func TestSSHKeys(t *testing.T) {
	dir, p := newLab(t, testSpec())
	tmp := t.TempDir()

	// The lab key: ssh-keygen reads both halves and they agree.
	priv, pub := filepath.Join(dir, "ssh/id_ed25519"), filepath.Join(dir, "ssh/id_ed25519.pub")
	if fingerprint(t, priv) != fingerprint(t, pub) {
		t.Error("the lab key's halves differ")
	}
	derived := strings.Fields(command(t, "ssh-keygen", "-y", "-f", priv))
	if keys := p.AuthorizedKeys(); len(keys) != 1 || !strings.HasPrefix(keys[0], derived[0]+" "+derived[1]+" ") {
		t.Errorf("AuthorizedKeys %q, want the lab key %v", keys, derived)
	}
	if p.LabKeyPath() != priv {
		t.Errorf("LabKeyPath %q, want %q", p.LabKeyPath(), priv)
	}

	// Host keys: ssh-keygen reads what goes into ssh_keys; each differs.
	seen := map[string]string{}
	for _, m := range testSpec().Machines {
		private, public := p.HostKey(m.Name)
		if !strings.HasPrefix(private, "-----BEGIN OPENSSH PRIVATE KEY-----\n") || !strings.HasPrefix(public, "ssh-ed25519 ") || strings.Contains(public, "\n") {
			t.Fatalf("%s: host key %q / %q is not an OpenSSH ed25519 pair", m.Name, private[:min(40, len(private))], public)
		}
		kf := writeFile(t, filepath.Join(tmp, m.Name), []byte(private), 0o600)
		pf := writeFile(t, filepath.Join(tmp, m.Name+".pub"), []byte(public+"\n"), 0o644)
		fp := fingerprint(t, kf)
		if fingerprint(t, pf) != fp {
			t.Errorf("%s: the host key's halves differ", m.Name)
		}
		if other, ok := seen[fp]; ok {
			t.Errorf("%s and %s have the same host key", other, m.Name)
		}
		seen[fp] = m.Name
		if fp == fingerprint(t, priv) {
			t.Errorf("%s's host key is the lab key", m.Name)
		}
	}
	if priv, pub := p.HostKey("nosuch"); priv != "" || pub != "" {
		t.Error("a machine not in the lab has a host key")
	}

	// known_hosts: ssh-keygen finds each machine by name and by address,
	// with its own key.
	kh := writeFile(t, filepath.Join(tmp, "known_hosts"), p.KnownHosts(), 0o644)
	if n := strings.Count(string(p.KnownHosts()), "\n"); n != 3 {
		t.Errorf("known_hosts has %d lines, want 3:\n%s", n, p.KnownHosts())
	}
	for _, m := range testSpec().Machines {
		_, public := p.HostKey(m.Name)
		key := strings.Join(strings.Fields(public)[:2], " ")
		for _, host := range []string{m.Name, m.IP.String()} {
			out := command(t, "ssh-keygen", "-F", host, "-f", kh)
			if !strings.Contains(out, m.Name+","+m.IP.String()+" "+key) {
				t.Errorf("ssh-keygen -F %s: %q, want %s's key", host, out, m.Name)
			}
		}
	}
	if out, err := execOut("ssh-keygen", "-F", "node9", "-f", kh); err == nil {
		t.Errorf("ssh-keygen -F node9 found %q", out)
	}

	fwd, err := p.KnownHostsForwarded(map[string]int{"node2": 2203, "master": 2201, "node1": 2202})
	if err != nil {
		t.Fatal(err)
	}
	want := ""
	for i, name := range []string{"master", "node1", "node2"} {
		_, public := p.HostKey(name)
		key := strings.Join(strings.Fields(public)[:2], " ")
		want += "[127.0.0.1]:220" + string(rune('1'+i)) + " " + key + "\n"
	}
	if string(fwd) != want {
		t.Errorf("forwarded known_hosts:\n%s\nwant\n%s", fwd, want)
	}
	fkh := writeFile(t, filepath.Join(tmp, "known_hosts.fwd"), fwd, 0o644)
	if out := command(t, "ssh-keygen", "-F", "[127.0.0.1]:2202", "-f", fkh); !strings.Contains(out, "[127.0.0.1]:2202 ssh-ed25519") {
		t.Errorf("ssh-keygen -F [127.0.0.1]:2202: %q", out)
	}
	for _, bad := range []map[string]int{{"node9": 2200}, {"node1": 0}, {"node1": 70000}} {
		if _, err := p.KnownHostsForwarded(bad); err == nil {
			t.Errorf("KnownHostsForwarded(%v) accepted", bad)
		}
	}
}

func TestAuthorizedKeysReplaceTheLabKey(t *testing.T) {
	k, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)).Public())
	if err != nil {
		t.Fatal(err)
	}
	user := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " alice@example"
	spec := testSpec()
	spec.AuthorizedKeys = []string{user}
	dir, p := newLab(t, spec)
	if _, err := os.Stat(filepath.Join(dir, "ssh")); !os.IsNotExist(err) {
		t.Errorf("a lab with authorized keys has an ssh/ directory (%v)", err)
	}
	if keys := p.AuthorizedKeys(); len(keys) != 1 || keys[0] != user {
		t.Errorf("AuthorizedKeys %q, want %q", keys, user)
	}
	if p.LabKeyPath() != "" {
		t.Errorf("LabKeyPath %q, want none", p.LabKeyPath())
	}
	// Dropping them later makes the lab key, and nothing else.
	before := snapshot(t, dir)
	p, err = Ensure(dir, testSpec())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ssh", "ssh/id_ed25519", "ssh/id_ed25519.pub"}
	if got := changed(before, snapshot(t, dir)); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("changed %v, want %v", got, want)
	}
	if keys := p.AuthorizedKeys(); len(keys) != 1 || !strings.HasSuffix(keys[0], " labbake@lab1") {
		t.Errorf("AuthorizedKeys %q, want the lab key", keys)
	}
}
