// Package lab brings the baked lab to life on this host: the last stage,
// after the images (internal/bake) and seeds. It maps lab.yaml and the
// outputs (OUT/ROLE.qcow2 and its manifest, OUT/seed/NODE.iso, OUT/pki)
// onto the host kit's machines (builders/kit: QEMU command lines, kit
// files) and runs them with internal/machine: up, down, status, reset.
// It picks the network mode (the bridge when the host has it, else QEMU
// user-mode networking with one multicast L2 segment on 127.0.0.1), the
// accelerator (KVM when it really runs guests, else TCG) and the host
// ports forwarded in user mode, which it keeps stable across runs.
package lab
