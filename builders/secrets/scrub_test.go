package secrets

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/labbake/labbake/builders/tree"
)

// hostKeys returns the host keys `ssh-keygen -A` makes, by base name.
func hostKeys(t *testing.T) map[string]string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc", "ssh"), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "", "ssh-keygen", "-A", "-f", root)
	ents, err := os.ReadDir(filepath.Join(root, "etc", "ssh"))
	if err != nil {
		t.Fatal(err)
	}
	keys := make(map[string]string)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(root, "etc", "ssh", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		keys[e.Name()] = string(b)
	}
	if len(keys) < 4 {
		t.Fatalf("ssh-keygen -A made %d files", len(keys))
	}
	return keys
}

// snakeoil makes a self-signed key pair as ssl-cert's make-ssl-cert does,
// and the name of the hash link it adds in /etc/ssl/certs.
func snakeoil(t *testing.T) (key, cert, hashLink string) {
	t.Helper()
	dir := t.TempDir()
	run(t, dir, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
		"-days", "3650", "-keyout", "k.pem", "-out", "c.pem")
	hash := strings.TrimSpace(run(t, dir, "openssl", "x509", "-hash", "-noout", "-in", "c.pem"))
	k, err := os.ReadFile(filepath.Join(dir, "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := os.ReadFile(filepath.Join(dir, "c.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return string(k), string(c), hash + ".0"
}

// debianTree is a base like a trixie one with openssh-server and ssl-cert
// installed (sshd optional), plus a few links around the keys.
func debianTree(t *testing.T, withSSHD bool) (*tree.Tree, string, string) {
	t.Helper()
	keys := hostKeys(t)
	key, cert, hashLink := snakeoil(t)
	ents := []tarEnt{
		tdir("usr/"), tdir("usr/sbin/"), tsymlink("sbin", "usr/sbin"),
		tdir("etc/"), tdir("etc/ssh/"), tfile("etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\n"),
		tfile("etc/ssh/moduli", "# moduli\n"),
		tdir("etc/ssl/private/"), tfile("etc/ssl/private/ssl-cert-snakeoil.key", key),
		tdir("etc/ssl/certs/"), tfile("etc/ssl/certs/ssl-cert-snakeoil.pem", cert),
		tsymlink("etc/ssl/certs/"+hashLink, "ssl-cert-snakeoil.pem"),
		tfile("etc/ssl/certs/ca.pem", certPEM()),
		tsymlink("etc/ssl/certs/aaaa.0", "ca.pem"),                        // stays
		tsymlink("etc/ssl/certs/dangling", "nowhere"),                     // dangled before: stays
		tsymlink("etc/ssl/certs/chain", hashLink),                         // to a link that goes: goes
		tsymlink("etc/alt.key", "/etc/ssl/private/ssl-cert-snakeoil.key"), // absolute: goes
		tsymlink("etc/sshdir", "ssh"),
		tsymlink("etc/via-dir-link", "sshdir/ssh_host_ed25519_key"), // through a dir symlink: goes
		tfile("var/lib/keys/k", "not a key"),
		tsymlink("etc/ssh/ssh_host_extra_key", "/var/lib/keys/k"), // a host key name that is a symlink: goes, its target stays
		tsymlink("etc/extra", "ssh/ssh_host_extra_key"),           // through it: goes
	}
	names := make([]string, 0, len(keys))
	for n := range keys {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		ents = append(ents, tfile("etc/ssh/"+n, keys[n]))
	}
	ents = append(ents, tdir("root/"), thardlink("root/rsa-backup", "etc/ssh/ssh_host_rsa_key"))
	if withSSHD {
		ents = append(ents, tfile("usr/sbin/sshd", "\x7fELF sshd"))
	}
	blobs := t.TempDir()
	tr := tree.New(testEpoch)
	tr.SetOrigin("base debian:trixie")
	if err := tr.ApplyTar(bytes.NewReader(mkTar(t, ents...)), "base", blobs); err != nil {
		t.Fatal(err)
	}
	return tr, blobs, hashLink
}

func TestScrub(t *testing.T) {
	for _, withSSHD := range []bool{true, false} {
		name := "without sshd"
		if withSSHD {
			name = "with sshd"
		}
		t.Run(name, func(t *testing.T) {
			tr, blobs, hashLink := debianTree(t, withSSHD)
			// The keys are real: Scan finds them before Scrub.
			before, err := Scan(context.Background(), tr, nil)
			if !errors.As(err, new(*Error)) || len(before) != 4 { // 3 host keys (one also hardlinked), snake-oil
				t.Fatalf("before Scrub: %d findings %v, err %v", len(before), before, err)
			}
			blobsBefore := countFiles(t, blobs)

			removed, err := Scrub(tr, blobs)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{
				"/etc/alt.key",
				"/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ecdsa_key.pub",
				"/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub",
				"/etc/extra", "/etc/ssh/ssh_host_extra_key",
				"/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_rsa_key.pub",
				"/etc/ssl/certs/" + hashLink, "/etc/ssl/certs/chain", "/etc/ssl/certs/ssl-cert-snakeoil.pem",
				"/etc/ssl/private/ssl-cert-snakeoil.key",
				"/etc/via-dir-link",
				"/root/rsa-backup",
			}
			slices.Sort(want)
			if !reflect.DeepEqual(removed, want) {
				t.Errorf("removed:\n got %v\nwant %v", removed, want)
			}
			for _, p := range want {
				if _, ok := tr.Get(p); ok {
					t.Errorf("%s still in the tree", p)
				}
			}
			for _, p := range []string{"etc/ssh/sshd_config", "etc/ssh/moduli", "etc/ssl/certs/aaaa.0", "etc/ssl/certs/dangling", "etc/ssl/certs/ca.pem", "etc/sshdir", "var/lib/keys/k"} {
				if _, ok := tr.Get(p); !ok {
					t.Errorf("%s removed", p)
				}
			}
			if found, err := Scan(context.Background(), tr, nil); err != nil || len(found) != 0 {
				t.Errorf("after Scrub: findings %v, err %v", found, err)
			}
			// The removed files' blobs are gone from the work dir (8
			// regular files; the unit adds one).
			wantBlobs := blobsBefore - 8
			if withSSHD {
				wantBlobs++
			}
			if n := countFiles(t, blobs); n != wantBlobs {
				t.Errorf("%d blobs left, want %d", n, wantBlobs)
			}

			unit, hasUnit := tr.Get("etc/systemd/system/" + HostKeysUnit)
			if hasUnit != withSSHD {
				t.Fatalf("unit present = %v, want %v", hasUnit, withSSHD)
			}
			if !withSSHD {
				if _, ok := tr.Get("etc/systemd/system"); ok {
					t.Error("etc/systemd/system created without sshd")
				}
				return
			}
			b, err := os.ReadFile(unit.Content.Path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, hostKeysUnit) || unit.Mode != 0o644 || unit.Origin != ScrubOrigin {
				t.Errorf("unit: mode %#o origin %q content\n%s", unit.Mode, unit.Origin, b)
			}
			for _, wants := range []string{"ssh.service.wants", "sshd.service.wants", "sshd@.service.wants"} {
				l, ok := tr.Get("etc/systemd/system/" + wants + "/" + HostKeysUnit)
				if !ok || l.Type != tree.Symlink || l.Linkname != "/etc/systemd/system/"+HostKeysUnit {
					t.Errorf("%s: %+v, present %v", wants, l, ok)
				}
			}
			if got := tr.Origin(); got != "base debian:trixie" {
				t.Errorf("tree origin after Scrub = %q", got)
			}

			// Idempotent: nothing more to remove, the same tree.
			d1, err := tr.Digest()
			if err != nil {
				t.Fatal(err)
			}
			again, err := Scrub(tr, blobs)
			if err != nil || len(again) != 0 {
				t.Errorf("second Scrub: %v, %v", again, err)
			}
			if d2, _ := tr.Digest(); d2 != d1 {
				t.Error("second Scrub changed the tree")
			}
		})
	}
}

// TestScrubHostKeyIsHardlink removes the whole inode when the key itself is
// the hardlink: the file it links to holds the same bytes.
func TestScrubHostKeyIsHardlink(t *testing.T) {
	blobs := t.TempDir()
	tr := tree.New(testEpoch)
	layer := mkTar(t, tfile("var/backup/key", pkcs8PEM(t)), thardlink("etc/ssh/ssh_host_ed25519_key", "var/backup/key"),
		thardlink("var/backup/key2", "var/backup/key"))
	if err := tr.ApplyTar(bytes.NewReader(layer), "l", blobs); err != nil {
		t.Fatal(err)
	}
	removed, err := Scrub(tr, blobs)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/etc/ssh/ssh_host_ed25519_key", "/var/backup/key", "/var/backup/key2"}
	if !reflect.DeepEqual(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	if n := countFiles(t, blobs); n != 0 {
		t.Errorf("%d blobs left", n)
	}
}

// TestHostKeysUnitVerifies runs systemd-analyze verify on the unit, with
// stand-ins for the sshd units it orders itself against.
func TestHostKeysUnitVerifies(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		missing(t, "systemd-analyze")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, HostKeysUnit), hostKeysUnit, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("systemd-analyze", "verify", "--man=no", filepath.Join(dir, HostKeysUnit))
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, want := range []string{"ExecStart=/usr/bin/ssh-keygen -A", "Before=ssh.service sshd.service sshd@.service", "ConditionFileNotEmpty=!/etc/ssh/ssh_host_ed25519_key"} {
		if !bytes.Contains(hostKeysUnit, []byte(want)) {
			t.Errorf("unit lacks %q", want)
		}
	}
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
