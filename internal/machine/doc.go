// Package machine runs the lab's machines on this host: the last stage,
// after the images (internal/bake) and seeds are written. For each machine
// it keeps, under OUT/run/, a thin qcow2 overlay of its role image (written
// by builders/qcow2), a QEMU process started daemonized with the command
// line builders/kit makes, its QMP and serial-console unix sockets, a
// console log, a pid file and a small state file; and it starts, stops
// (ACPI shutdown over QMP, then kill), reports and resets them. Nothing it
// starts listens on anything but unix sockets and loopback ports.
package machine
