// Package kit makes the host side of a lab: the QEMU command line of each
// machine and the files that run the lab on a plain Debian host, which the
// original hand-built lab wrote by hand, or the objects that run it on a
// Kubernetes cluster with KubeVirt.
//
// Where it sits in the pipeline:
//
//	lab.yaml (machines, network) + output/<role>.qcow2 + output/seed/<node>.iso
//	    → kit → QEMUArgs (what `labbake up` execs), output/kit/ (Render)
//	lab.yaml + each role's published containerDisk digest + each machine's seed documents
//	    → kit → output/kit/kubevirt/ (KubeVirt)
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
//
// [KubeVirt] is the same lab on a cluster with KubeVirt and Multus: one
// VirtualMachine per machine (runStrategy Always, so the lab starts when
// applied; its CPU cores and memory; UEFI without Secure Boot or BIOS as
// the role's image boots), whose root disk is the role's containerDisk by
// digest and whose cloud-init NoCloud disk takes user-data and
// network-config from the machine's Secret (Opaque, keys userdata and
// networkdata, the seed documents' exact bytes: the same as on the seed
// ISO). Each VM has two NICs, "default" on the pod network (masquerade)
// with the machine's [UplinkMAC] and "lab" on the lab segment (bridge
// binding) with macaddr.String(name): the seed's network-config matches
// exactly these, and KubeVirt refuses a lab whose network-config names
// other MACs. The lab segment is a NetworkAttachmentDefinition of the
// reference bridge CNI plugin without IPAM, the seeds giving the static
// addresses. A kustomization.yaml lists the objects and a README says how
// to apply them and that the Secrets, which hold the machines' private
// keys, are secret (mode 0600, [KubeVirtFileMode]). The objects are Go
// structs marshalled to YAML in field order, strings quoted wherever a
// YAML 1.1 reader could take them for something else; the tests decode
// each strictly into the real API types (kubevirt.io/api, the
// network-attachment-definition client's, k8s.io/api), which labbake itself
// does not import.
package kit
