// Package vmtest boots a baked image under QEMU and reads its serial
// console: the host half of `labbake test`.
//
// Where it sits in the pipeline:
//
//	OUT/ROLE.qcow2 ─▶ throw-away qcow2 overlay ─▶ QEMU (KVM or TCG) ─▶ console
//	   ─▶ milestones + the lines of labbake-checks.service (builders/checks) ─▶ Result
//
// The image itself is never written: [Run] makes a thin overlay with the
// image as its backing file in a temporary dir and removes it afterwards.
//
// How the guest knows it is being tested: the boot loader's kernel command
// line is baked into the image, so Run cannot add an argument to it.
// Instead it passes a QEMU fw_cfg file, -fw_cfg name=opt/labbake/test,string=1,
// which any firmware (OVMF or SeaBIOS) and any boot loader leave alone; the
// guest reads it as /sys/firmware/qemu_fw_cfg/by_name/opt/labbake/test/raw
// (the qemu_fw_cfg module, loaded by the check script when udev has not
// yet). A kernel command line with labbake.test=1 works too (for a boot by
// hand, or Options.Append), but Run does not need it.
//
// The console is written to Options.LogPath as it comes, parsed line by line
// into milestones (firmware, kernel, initramfs, multi-user, checks) timed
// from QEMU's start, and check results. When the done line arrives QEMU is
// told to quit on its monitor socket (and killed if it does not); on a
// timeout it is killed and the error holds the last console lines.
package vmtest
