// Package kit makes the host side of a lab: the QEMU command line of each
// machine and the files that run the lab on a plain Debian host, which the
// original hand-built lab wrote by hand.
//
// Where it sits in the pipeline:
//
//	lab.yaml (machines, network) + output/<role>.qcow2 + output/seed/<node>.iso
//	    → kit → QEMUArgs (what `labbake up` execs), output/kit/ (Render)
//
// [QEMUArgs] is a machine's QEMU command line: q35 with OVMF for UEFI, pc
// with SeaBIOS for BIOS; KVM with the host CPU or TCG; the disk a thin
// qcow2 overlay of the role's image on virtio-scsi (cache=writeback,
// discard=unmap), the cloud-init seed a read-only CD on the same bus; the
// lab NIC on a host bridge (qemu-bridge-helper) or, in user mode, on a UDP
// multicast group of 127.0.0.1 with a second, user-mode NIC forwarding
// host ports of 127.0.0.1; QEMU in the background with its QMP and serial
// console on unix sockets and the console also in a log file. Nothing
// listens on an address other than the loopback.
//
// The lab NIC's MAC is macaddr.String(name), as the original lab's; the
// user-mode NIC's is [UplinkMAC](name): the seeds match the NICs by them.
//
// [Render] writes the kit: the launcher run-qemu and one env file per
// machine, run by the systemd user unit qemu@.service, an ssh_config, and
// in bridge mode systemd-networkd's bridge, dnsmasq's DHCP and DNS,
// nftables NAT, qemu-bridge-helper's bridge.conf, with a README saying
// where each goes. The launcher's QEMU line is generated from the same
// table as QEMUArgs, placeholders replaced by env variables, so the two
// agree; the tests run both for real and compare.
package kit
