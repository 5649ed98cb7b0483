// Package checks bakes the in-guest half of `labbake test` into an image.
//
// Where it sits in the pipeline:
//
//	Recipe.Checks ─▶ checks.Install ─▶ Tree (unit + script + list) ─▶ disk
//	                                    …boot under internal/vmtest ─▶ console lines
//
// Every image gets a oneshot unit, labbake-checks.service, a POSIX sh script
// /usr/lib/labbake/checks and the recipe's checks as /usr/lib/labbake/checks.list
// (shell calls, one check a line). The unit does nothing on a normal boot:
// its ExecCondition= runs the script with --enabled, which succeeds only when
// the kernel command line holds labbake.test=1 or QEMU passes the fw_cfg file
// opt/labbake/test with the value 1 (what `labbake test` does, since the boot
// loader's command line is baked into the image). A failed ExecCondition
// skips the unit without marking it failed.
//
// Ordering: the unit is wanted by multi-user.target and ordered after it.
// That is no ordering cycle only because the unit has DefaultDependencies=no
// (a target adds After= on the units it wants unless they opt out), the way
// systemd-update-utmp-runlevel.service does it; the unit adds the basic
// dependencies itself (after sysinit.target and basic.target, conflicting with
// shutdown.target).
//
// On the serial console (/dev/ttyS0, else /dev/console) and in the journal
// the script prints one line per check and a final summary:
//
//	LABBAKE-CHECKS start n=3
//	LABBAKE-CHECK ok units_active "etcd.service" "active"
//	LABBAKE-CHECK fail files "/etc/missing" "no such file"
//	LABBAKE-CHECK fail commands "etcdctl endpoint health" "exit 1: …"
//	LABBAKE-CHECKS done ok=1 fail=2
//
// Names and details are in double quotes with \ and " escaped by a
// backslash and control characters replaced by spaces, so each line parses
// on its own (internal/vmtest parses them).
package checks
