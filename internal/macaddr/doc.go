// Package macaddr derives a lab machine's MAC address from its name, as
// the original hand-built lab did: the seeds (builders/seed) match the lab
// NIC by it and the boot kit (builders/kit, labbake up) gives it to QEMU,
// so both must call this one function.
package macaddr
