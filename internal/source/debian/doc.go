// Package debian is a base kind: a recipe's `base: {debian: {...}}` (a
// Spec) becomes an mmdebstrap tarball in the content-addressed cache, keyed
// by the digest of the spec; the tree stage then applies it like any tar
// base.
//
// # Caching
//
// A base is built once and reused by every later build. Spec.Key hashes
// the normalized spec (defaults filled, package and other lists sorted and
// deduplicated), SOURCE_DATE_EPOCH and FormatVersion into a ref key
// "debian:<sha256>". Builder.Build resolves that ref in the Store; when the
// ref and its blob exist mmdebstrap does not run. Otherwise it runs once
// under Store.Lock(key): a concurrent build of the same spec, in this
// process or another, waits for the lock, finds the ref and reuses the
// result. Offline (labbake --offline, air-gapped use) a missing base is an
// error wrapping iox.ErrOffline: run `labbake fetch` on a connected machine or
// import a bundle.
//
// The key covers the spec, not the archive: without Snapshot the same spec
// built on another day may pull newer packages, and a cached base is not
// refreshed until the spec, the epoch or FormatVersion changes. Pin Snapshot
// for bases that must be rebuilt bit for bit.
//
// # The mmdebstrap run
//
// Builder.Args is the exact, deterministic command line (also shown by
// `labbake plan`): --variant, --mode=root when running as root else
// --mode=unshare, --format=tar, --architectures, --components, --include
// with the sorted packages, apt's Check-Valid-Until disabled for snapshot
// mirrors (snapshot.debian.org serves Release files that have long
// expired), the customize hooks below, the suite, the output path and the
// sources (see Sources: a suite alone misses kernels that are only in
// -updates or -security, so real recipes list those in Extra).
// mmdebstrap runs with SOURCE_DATE_EPOCH=epoch, which makes it clamp every
// mtime in the tarball (and set the time stamps apt and dpkg record), and with
// TMPDIR inside a private directory under Builder.TempDir, so that all its
// temporary files go away with that directory. mmdebstrap runs in its own
// process group: cancelling the context sends the group SIGTERM (mmdebstrap
// then unmounts /proc, /sys and /dev from its chroot), SIGKILL after
// Builder.KillGrace; mounts left behind are detached before the directory
// is removed.
//
// # What a base does not contain
//
// A baked image is copied onto many machines, so a base must not carry
// anything that identifies one machine. mmdebstrap's own clean-up (on by
// default and not skipped) removes apt's package lists
// (/var/lib/apt/lists) and package cache (/var/cache/apt: *.deb,
// pkgcache.bin), the dpkg and apt logs and /var/lib/dbus/machine-id, and
// empties /etc/machine-id. The customize hooks (see Hooks) add to that,
// and also hold when the clean-up changes:
//
//   - /etc/ssh/ssh_host_* are removed: openssh-server generates host keys
//     when it is installed, and every machine would share them. Keys must
//     be generated at first boot (cloud-init's ssh module does, or run
//     `ssh-keygen -A` before sshd starts).
//   - /etc/machine-id is emptied (systemd generates the id at first boot)
//     and /var/lib/dbus/machine-id removed.
//   - /etc/hostname, copied from the build host, becomes "localhost", and
//     /etc/resolv.conf, copied from the build host, is removed unless a
//     package replaced it with a symlink (systemd-resolved). This also
//     keeps the tarball identical across build hosts.
package debian
