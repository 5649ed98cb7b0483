package debian

import (
	"os"
	"strings"
)

// Archive URLs used when a Spec names no Mirror.
const (
	defaultMirror         = "http://deb.debian.org/debian"
	defaultSecurityMirror = "http://deb.debian.org/debian-security"
	snapshotArchive       = "http://snapshot.debian.org/archive/debian/"
	snapshotSecurity      = "http://snapshot.debian.org/archive/debian-security/"
)

// Hooks are the --customize-hook scripts run in every base, after the
// packages are installed and before mmdebstrap's own clean-up (which removes
// apt's package lists and cache, the dpkg/apt logs and
// /var/lib/dbus/machine-id, and empties /etc/machine-id). They make sure a
// baked image never carries the build host's identity nor shares one with
// its siblings:
//   - SSH host keys are removed (openssh-server generates them when it is
//     installed); they must be generated at first boot (cloud-init's ssh
//     module does, or `ssh-keygen -A` before sshd starts).
//   - /etc/machine-id is emptied (systemd generates an id at first boot) and
//     /var/lib/dbus/machine-id removed, also when mmdebstrap's clean-up is
//     skipped.
//   - /etc/hostname, which mmdebstrap copies from the build host, becomes
//     "localhost"; /etc/resolv.conf, also copied from the build host, is
//     removed unless a package made it a symlink (systemd-resolved);
//   - /etc/hosts, which nothing in a minbase creates, gets localhost
//     (without it, lookups of localhost go to DNS and fail offline).
//
// The hooks are part of FormatVersion: change them, bump it.
func Hooks() []string {
	return []string{
		`rm -f "$1"/etc/ssh/ssh_host_*`,
		`if [ -e "$1"/etc/machine-id ]; then : > "$1"/etc/machine-id; fi`,
		`rm -f "$1"/var/lib/dbus/machine-id`,
		`printf 'localhost\n' > "$1"/etc/hostname && chmod 0644 "$1"/etc/hostname`,
		`if [ ! -L "$1"/etc/resolv.conf ]; then rm -f "$1"/etc/resolv.conf; fi`,
		`if [ ! -e "$1"/etc/hosts ]; then printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$1"/etc/hosts; fi`,
	}
}

// NoDocs are the dpkg options that leave documentation out of a base
// (mmdebstrap writes them to /etc/dpkg/dpkg.cfg.d/, so they hold for
// packages installed later too). Copyright files stay.
func NoDocs() []string {
	return []string{
		"path-exclude=/usr/share/man/*",
		"path-exclude=/usr/share/info/*",
		"path-exclude=/usr/share/doc/*",
		"path-include=/usr/share/doc/*/copyright",
		"path-exclude=/usr/share/lintian/*",
	}
}

// mode returns the mmdebstrap --mode for b: b.Mode if set, else "root" when
// running as root and "unshare" otherwise.
func (b *Builder) mode() string {
	if b.Mode != "" {
		return b.Mode
	}
	if os.Geteuid() == 0 {
		return "root"
	}
	return "unshare"
}

// program is argv[0] of the command line Args returns.
func (b *Builder) program() string {
	if b.Mmdebstrap != "" {
		return b.Mmdebstrap
	}
	return "mmdebstrap"
}

// Args returns the mmdebstrap command line (argv[0] included) that builds
// spec as a tarball at outPath. It is deterministic: the same Builder, spec
// and outPath give the same arguments. spec is normalized first; it is not
// validated.
func (b *Builder) Args(spec Spec, outPath string) []string {
	n := spec.Normalize()
	args := []string{
		b.program(),
		"--variant=" + n.Variant,
		"--mode=" + b.mode(),
		"--format=tar",
		"--architectures=" + n.Arch,
		"--components=" + strings.Join(n.Components, ","),
	}
	if len(n.Packages) > 0 {
		args = append(args, "--include="+strings.Join(n.Packages, ","))
	}
	if n.Snapshot != "" {
		args = append(args, `--aptopt=Acquire::Check-Valid-Until "false"`)
	}
	for _, h := range Hooks() {
		args = append(args, "--customize-hook="+h)
	}
	if !n.Docs {
		for _, o := range NoDocs() {
			args = append(args, "--dpkgopt="+o)
		}
	}
	// "--" keeps a suite or path starting with a dash from being read as an
	// option.
	args = append(args, "--", n.Suite, outPath)
	return append(args, Sources(n)...)
}

// Sources returns the MIRROR arguments of mmdebstrap for spec: none when the
// spec names no Mirror, Snapshot or Extra (mmdebstrap then uses
// deb.debian.org, with -updates and -security for a stable suite), else one
// one-line sources.list entry per suite: "deb URI SUITE COMPONENTS".
//
// The URI is Mirror if set, else the snapshot archive at Snapshot, else
// http://deb.debian.org/debian. Extra suites ending in "-security" use the
// matching security archive: the snapshot's debian-security archive, the
// default security mirror, or, when Mirror ends in "/debian", Mirror with
// "-security" appended (a mirror laid out like deb.debian.org); any other
// Mirror serves them itself. Extra entries that already are "deb …" lines are
// passed through unchanged.
func Sources(spec Spec) []string {
	n := spec.Normalize()
	if n.Mirror == "" && n.Snapshot == "" && len(n.Extra) == 0 {
		return nil
	}
	comps := strings.Join(n.Components, " ")
	main, security := defaultMirror, defaultSecurityMirror
	switch {
	case n.Mirror != "":
		main, security = n.Mirror, n.Mirror
		if m := strings.TrimSuffix(n.Mirror, "/"); strings.HasSuffix(m, "/debian") {
			security = m + "-security"
		}
	case n.Snapshot != "":
		main, security = snapshotArchive+n.Snapshot, snapshotSecurity+n.Snapshot
	}
	out := []string{"deb " + main + " " + n.Suite + " " + comps}
	for _, e := range n.Extra {
		switch {
		case isSourceLine(e):
			out = append(out, e)
		case strings.HasSuffix(e, "-security"):
			out = append(out, "deb "+security+" "+e+" "+comps)
		default:
			out = append(out, "deb "+main+" "+e+" "+comps)
		}
	}
	return out
}

// MirrorURLs are the archive URLs a spec makes mmdebstrap read.
func MirrorURLs(spec Spec) []string {
	n := spec.Normalize()
	lines := Sources(n)
	if len(lines) == 0 {
		return []string{defaultMirror}
	}
	var urls []string
	for _, l := range lines {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "deb" {
			u := f[1]
			if strings.HasPrefix(u, "[") { // deb [options] URL …
				for _, x := range f[2:] {
					if strings.Contains(x, "://") {
						u = x
						break
					}
				}
			}
			urls = append(urls, u)
		}
	}
	return urls
}
