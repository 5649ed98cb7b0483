// Package seed renders the cloud-init NoCloud documents of one lab machine:
// meta-data, user-data and network-config, the three files of its seed ISO
// (output/seed/<node>.iso, volume id "cidata").
//
// Place in the pipeline: labbake's role images are the same for every
// machine of every lab; everything that makes a machine this machine comes
// from its seed. internal/bake gathers a Machine (its name, lab MAC from
// internal/macaddr, address, the lab's SSH keys, the certificates and
// kubeconfigs of internal/pki, /etc/network-environment from
// NetworkEnvironment), calls Render, and hands Seed.Files to the ISO 9660
// writer. Nothing here touches the disk or the network.
//
// What the documents do in the guest (cloud-init 22.4 and later):
//
//   - meta-data: instance-id is a hash of the whole seed, so any change of
//     content (a renewed certificate, a new key) is a new instance and
//     cloud-init applies the per-instance modules again; local-hostname.
//   - network-config (version 2): the lab NIC, matched by its MAC and
//     renamed lab0, gets the static address, a default route via the lab
//     gateway with metric LabRouteMetric, and the nameservers. When the
//     machine also has an uplink NIC (QEMU user-mode networking, for labs
//     run without root), it is matched by its MAC, renamed uplink0, uses
//     DHCP with route metric UplinkRouteMetric, lower, so its default route
//     wins, and is optional, so nothing waits for it when it is absent. The
//     same seed serves both modes.
//   - user-data (#cloud-config): hostname, fqdn, /etc/hosts, locale
//     C.UTF-8, the image's apt sources kept; login: root only, by key — a
//     users entry for root (an existing user: cloud-init locks its password
//     and adds the keys to /root/.ssh/authorized_keys), disable_root false
//     so the keys carry no "please log in as" command, no default user
//     (there may be no sudo), passwords refused by an sshd drop-in written
//     before sshd starts (ssh_pwauth would restart sshd after boot); host keys: exactly the given
//     ones (ssh_deletekeys true, ssh_keys, and ssh_genkeytypes naming only
//     their types: cloud-init generates keys only without ssh_keys, and its
//     schema refuses an empty list) so a known_hosts written by labbake
//     stays exact; write_files for every File,
//     base64 encoded so any byte sequence arrives unchanged and nothing in a
//     file can be read as YAML. No packages, no commands.
//
// Every document is marshalled from Go structs with go.yaml.in/yaml/v3, every
// string scalar that comes from the caller double-quoted (YAML 1.1 readers
// such as cloud-init's PyYAML would otherwise take 52:54:00:12:34:56 for a
// base-60 integer or "on" for a boolean), so equal Machines give equal bytes.
//
// The lab network is IPv4 (Machine.Address and Gateway must be IPv4;
// nameservers may be IPv6): cloud-init 22.4 turns a version-2 route to ::/0
// into one to ::/64 and does not know "to: default".
//
// Known limit: cloud-init before 23.3 (Debian bookworm has 22.4) drops the
// metric of a version-2 route when it renders networkd or ifupdown files
// (cloud-init issue 4217), so there the lab's default route gets metric 0
// and beats the uplink's; the netplan renderer passes the config through
// intact. Bridge mode is not affected.
package seed
