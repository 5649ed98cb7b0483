package secrets

import (
	_ "embed"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/labbake/labbake/builders/tree"
)

// HostKeysUnit is the unit Scrub installs when the image has sshd.
const HostKeysUnit = "labbake-ssh-hostkeys.service"

// ScrubOrigin is the Origin of the entries Scrub adds (the unit and its
// enablement link).
const ScrubOrigin = "labbake secrets.Scrub"

// hostKeysUnit generates the SSH host keys of a machine that has none.
//
// Debian trixie's openssh-server ships sshd-keygen.service, which runs
// `ssh-keygen -A` only on a first boot (ConditionFirstBoot=yes: when
// /etc/machine-id is missing or "uninitialized"). labbake's Debian bases
// empty /etc/machine-id, which systemd does not take for a first boot, so
// that unit never runs there, and ssh.service's only ExecStartPre= is
// `sshd -t`, which fails without host keys. Hence this unit: it runs when
// none of the default host keys is there (or only empty ones, which
// `ssh-keygen -A` regenerates), after cloud-init's network stage (whose ssh
// module installs the seed's keys or generates its own, so with a seed this
// unit has nothing to do) and after sshd-keygen.service (never two
// generators at once), and before any sshd unit.
//
//go:embed labbake-ssh-hostkeys.service
var hostKeysUnit []byte

// sshd is the daemon whose presence calls for the host keys unit.
const sshd = "usr/sbin/sshd"

// Scrubbed paths: SSH host keys (any name starting with ssh_host_ in
// /etc/ssh: keys, .pub, host certificates) and the snake-oil key pair that
// Debian's ssl-cert makes when it is installed.
const sshDir = "etc/ssh"

var scrubFiles = []string{
	"etc/ssl/private/ssl-cert-snakeoil.key",
	"etc/ssl/certs/ssl-cert-snakeoil.pem",
}

// Scrub removes from t the secrets that packages make for themselves when
// they are installed, which every machine baked from the image would share:
// SSH host keys (/etc/ssh/ssh_host_*) and ssl-cert's snake-oil key and
// certificate (/etc/ssl/private/ssl-cert-snakeoil.key,
// /etc/ssl/certs/ssl-cert-snakeoil.pem). With a removed file go its
// hardlinks (tree.Remove would hand the content to them) and the symlinks
// that would dangle because of it (ssl-cert's /etc/ssl/certs/HASH.0 ->
// ssl-cert-snakeoil.pem), through chains of symlinks. Symlinks that dangled
// already are left alone.
//
// When the image has /usr/sbin/sshd, Scrub installs and enables
// HostKeysUnit (an owned blob in blobDir; Origin ScrubOrigin), so a machine
// booted without a seed still gets host keys and sshd starts.
//
// It returns the absolute paths it removed, sorted. Scrub is idempotent.
func Scrub(t *tree.Tree, blobDir string) (removed []string, err error) {
	entries := t.Entries()
	byPath := make(map[string]tree.Entry, len(entries))
	links := make(map[string][]string) // regular path -> hardlinks
	for _, e := range entries {
		byPath[e.Path] = e
		if e.Type == tree.Hardlink {
			links[e.Linkname] = append(links[e.Linkname], e.Path)
		}
	}

	var targets []string
	if dir, err := t.Resolve(sshDir + "/x"); err == nil {
		dir = path.Dir(dir)
		for _, e := range entries {
			d, base := path.Split(e.Path)
			if d == dir+"/" && strings.HasPrefix(base, "ssh_host_") && e.Type != tree.Dir {
				targets = append(targets, e.Path)
			}
		}
	}
	for _, p := range scrubFiles {
		r, err := t.Resolve(p)
		if err != nil {
			continue
		}
		if e, ok := byPath[r]; ok && e.Type != tree.Dir {
			targets = append(targets, r)
		}
	}

	gone := make(map[string]bool)
	for _, p := range targets {
		e := byPath[p]
		group := []string{p}
		if e.Type == tree.Hardlink || e.Type == tree.Regular {
			reg := p
			if e.Type == tree.Hardlink {
				reg = e.Linkname
			}
			group = append(append(group, links[reg]...), reg)
		}
		for _, q := range group {
			gone[q] = true
		}
	}
	if len(gone) > 0 {
		// Symlinks that lead to or through a removed path; again until
		// none is added (a symlink whose chain meets such a symlink goes
		// too).
		for changed := true; changed; {
			changed = false
			for _, e := range entries {
				if e.Type != tree.Symlink || gone[e.Path] {
					continue
				}
				hops, ok := linkHops(t, e)
				if ok && slices.ContainsFunc(hops, func(h string) bool { return gone[h] }) {
					gone[e.Path] = true
					changed = true
				}
			}
		}
		// Hardlinks first, so no content is handed over to them.
		paths := make([]string, 0, len(gone))
		for p := range gone {
			paths = append(paths, p)
		}
		slices.SortFunc(paths, func(a, b string) int {
			ha, hb := byPath[a].Type == tree.Hardlink, byPath[b].Type == tree.Hardlink
			if ha != hb {
				if ha {
					return -1
				}
				return 1
			}
			return strings.Compare(a, b)
		})
		for _, p := range paths {
			t.Remove(p)
			removed = append(removed, "/"+p)
		}
		slices.Sort(removed)
	}

	if e, ok := t.Get(sshdPath(t)); ok && e.Type != tree.Dir {
		prev := t.Origin()
		t.SetOrigin(ScrubOrigin)
		err := t.AddUnits([]tree.Unit{{Name: HostKeysUnit, Content: hostKeysUnit, Enable: true}}, blobDir)
		t.SetOrigin(prev)
		if err != nil {
			return removed, fmt.Errorf("secrets: installing %s: %w", HostKeysUnit, err)
		}
	}
	return removed, nil
}

// sshdPath returns where sshd would be, its parents resolved in the tree.
func sshdPath(t *tree.Tree) string {
	if r, err := t.Resolve(sshd); err == nil {
		return r
	}
	return sshd
}

// linkHops returns the paths symlink e leads through inside the tree, its
// final target last, following symlinks as the kernel would (at most 40
// hops); false when a target leaves the tree or the chain loops.
func linkHops(t *tree.Tree, e tree.Entry) ([]string, bool) {
	var hops []string
	cur := e
	for range 40 {
		target := cur.Linkname
		if !strings.HasPrefix(target, "/") {
			target = path.Join(path.Dir("/"+cur.Path), target)
		}
		r, err := t.Resolve(target)
		if err != nil {
			return nil, false
		}
		hops = append(hops, r)
		next, ok := t.Get(r)
		if !ok || next.Type != tree.Symlink {
			return hops, true
		}
		cur = next
	}
	return nil, false
}
