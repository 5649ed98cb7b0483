package vmtest

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Console snippets as QEMU's serial port shows them (trimmed from real
// boots: SeaBIOS + direct kernel, OVMF + systemd-boot, GRUB).
func TestParser(t *testing.T) {
	for _, tc := range []struct {
		name       string
		console    string
		milestones []string
		checks     int
		done       bool
		passed     bool
		panicked   bool
	}{
		{
			name: "seabios direct kernel, all passed",
			console: "\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2-debian-1.16.2-1)\r\n" +
				"Booting from ROM..\r\n" +
				"Probing EDD (edd=off to disable)... oc[    0.000000] Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org)\r\n" +
				"[    5.539923] Run /init as init process\r\n" +
				"[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mmulti-user.target\x1b[0m - Multi-User System.\r\n" +
				"LABBAKE-CHECKS start n=2\r\n" +
				"LABBAKE-CHECK ok units_active \"systemd-journald.service\" \"active\"\r\n" +
				"[   21.172958] bochs-drm 0000:00:02.0: vgaarb: deactivate vga console\r\n" +
				"LABBAKE-CHECK ok files \"/etc/fstab\" \"exists\"\r\n" +
				"LABBAKE-CHECKS done ok=2 fail=0\r\n",
			milestones: []string{Firmware, Kernel, Initramfs, MultiUser, Checks},
			checks:     2, done: true, passed: true,
		},
		{
			name: "ovmf, grub, old systemd, one failure",
			console: "BdsDxe: loading Boot0001 \"UEFI QEMU QEMU HARDDISK \" from PciRoot(0x0)\r\n" +
				"Loading Linux 6.12.0-1-amd64 ...\r\n" +
				"Loading initial ramdisk ...\r\n" +
				"[    0.000000] Linux version 6.12.0-1-amd64\r\n" +
				"Begin: Loading essential drivers ... done.\r\n" +
				"[  OK  ] Reached target Multi-User System.\r\n" +
				"LABBAKE-CHECKS start n=2\r\n" +
				"LABBAKE-CHECK ok units_active \"etcd.service\" \"active\"\r\n" +
				"LABBAKE-CHECK fail units_active \"does-not-exist.service\" \"unit not-found\"\r\n" +
				"LABBAKE-CHECKS done ok=1 fail=1\r\n",
			// GRUB's "Loading initial ramdisk" is the boot loader reading
			// it, not the initramfs running.
			milestones: []string{Firmware, Kernel, Initramfs, MultiUser, Checks},
			checks:     2, done: true,
		},
		{
			name: "fewer results than announced (console lost a line)",
			console: "LABBAKE-CHECKS start n=3\n" +
				"LABBAKE-CHECK ok files \"/a\" \"exists\"\n" +
				"LABBAKE-CHECKS done ok=1 fail=0\n",
			milestones: []string{Firmware, MultiUser, Checks},
			checks:     1, done: true,
		},
		{
			name: "no checks in the image",
			console: "[    0.000000] Linux version 6.1.0\n" +
				"LABBAKE-CHECKS start n=0\nLABBAKE-CHECKS done ok=0 fail=0\n",
			milestones: []string{Firmware, Kernel, MultiUser, Checks},
			done:       true, passed: true,
		},
		{
			name: "panic",
			console: "[    0.000000] Linux version 6.1.0\n" +
				"[    2.1] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n",
			milestones: []string{Firmware, Kernel},
			panicked:   true,
		},
		{
			name:    "still booting",
			console: "\r\n\r\nSeaBIOS (version 1.16.2)\r\n",
			// blank lines are not the firmware's first output
			milestones: []string{Firmware},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newParser()
			for i, l := range strings.SplitAfter(tc.console, "\n") {
				if l == "" {
					continue
				}
				p.line(time.Duration(i)*time.Second, strings.TrimRight(l, "\r\n"))
			}
			var names []string
			for _, m := range p.milestones {
				names = append(names, m.Name)
			}
			if !reflect.DeepEqual(names, tc.milestones) {
				t.Errorf("milestones %v, want %v", names, tc.milestones)
			}
			if len(p.checks) != tc.checks || p.done() != tc.done || p.passed() != tc.passed || p.panicked != tc.panicked {
				t.Errorf("checks=%d done=%v passed=%v panicked=%v; want %d %v %v %v",
					len(p.checks), p.done(), p.passed(), p.panicked, tc.checks, tc.done, tc.passed, tc.panicked)
			}
		})
	}
}

func TestParserTimes(t *testing.T) {
	p := newParser()
	p.line(100*time.Millisecond, "SeaBIOS")
	ev := p.line(3*time.Second, "[    0.000000] Linux version 6.1.0")
	if len(ev.milestones) != 1 || ev.milestones[0].Name != Kernel || ev.milestones[0].At != 3*time.Second {
		t.Errorf("event %+v", ev)
	}
	if ev := p.line(4*time.Second, "[    0.000000] Linux version again"); len(ev.milestones) != 0 {
		t.Errorf("a milestone is reported twice: %+v", ev)
	}
	ev = p.line(5*time.Second, `LABBAKE-CHECK fail commands "x" "exit 1: "`)
	if ev.check == nil || ev.check.OK || ev.check.Name != "x" {
		t.Errorf("check event %+v", ev.check)
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"[\x1b[0;32m  OK  \x1b[0m] Reached\r": "[  OK  ] Reached",
		"\x1bc\x1b[?7lSeaBIOS":                "SeaBIOS",
		"plain":                               "plain",
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTail(t *testing.T) {
	tl := &tail{n: 3}
	for _, s := range []string{"1", "2", "3", "4", "5"} {
		tl.add(s)
	}
	if got := tl.String(); got != "3\n4\n5" {
		t.Errorf("tail %q", got)
	}
}

func TestCommand(t *testing.T) {
	m := machine{overlay: "/tmp/x,y/overlay.qcow2", vars: "/tmp/x,y/VARS.fd", monitor: "/tmp/x,y/monitor.sock", accel: "tcg"}
	for _, tc := range []struct {
		name string
		opts Options
		m    machine
		want string
	}{
		{
			name: "uefi tcg",
			opts: Options{Firmware: UEFI},
			m:    m,
			want: "-name labbake-test -machine q35 -accel tcg,thread=single -smp 2 -m 2048 -nographic -serial stdio " +
				"-monitor unix:/tmp/x,y/monitor.sock,server=on,wait=off -no-reboot -nic none " +
				"-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd " +
				"-drive if=pflash,format=raw,unit=1,file=/tmp/x,,y/VARS.fd " +
				"-device virtio-scsi-pci,id=scsi0 " +
				"-drive file=/tmp/x,,y/overlay.qcow2,format=qcow2,if=none,id=disk0,discard=unmap,cache=writeback " +
				"-device scsi-hd,drive=disk0,bus=scsi0.0,bootindex=1 -fw_cfg name=opt/labbake/test,string=1 -device virtio-rng-pci",
		},
		{
			name: "bios kvm direct kernel",
			opts: Options{Firmware: BIOS, MemoryMiB: 1024, CPUs: 1, Kernel: "/k", Initrd: "/i", Append: "root=UUID=u console=ttyS0"},
			m:    machine{overlay: "/o.qcow2", monitor: "/m.sock", accel: "kvm"},
			want: "-name labbake-test -machine pc -accel kvm -cpu host -smp 1 -m 1024 -nographic -serial stdio " +
				"-monitor unix:/m.sock,server=on,wait=off -no-reboot -nic none " +
				"-device virtio-scsi-pci,id=scsi0 " +
				"-drive file=/o.qcow2,format=qcow2,if=none,id=disk0,discard=unmap,cache=writeback " +
				"-device scsi-hd,drive=disk0,bus=scsi0.0,bootindex=1 -fw_cfg name=opt/labbake/test,string=1 -device virtio-rng-pci " +
				"-kernel /k -initrd /i -append root=UUID=u console=ttyS0",
		},
		{
			name: "a machine's seed and lab NIC",
			opts: Options{Firmware: BIOS, Seed: "/out/seed/n1.iso", NIC: &NIC{
				MAC: "52:54:eb:79:54:ec", Net: netip.MustParsePrefix("172.18.0.0/16"),
				Gateway: netip.MustParseAddr("172.18.0.1"), Guest: netip.MustParseAddr("172.18.0.5"), SSHPort: 2222,
			}},
			m: machine{overlay: "/o.qcow2", monitor: "/m.sock", accel: "tcg"},
			want: "-name labbake-test -machine pc -accel tcg,thread=single -smp 2 -m 2048 -nographic -serial stdio " +
				"-monitor unix:/m.sock,server=on,wait=off -no-reboot " +
				"-netdev user,id=lab,restrict=on,net=172.18.0.0/16,host=172.18.0.1,hostfwd=tcp:127.0.0.1:2222-172.18.0.5:22 " +
				"-device virtio-net-pci,netdev=lab,mac=52:54:eb:79:54:ec " +
				"-device virtio-scsi-pci,id=scsi0 " +
				"-drive file=/o.qcow2,format=qcow2,if=none,id=disk0,discard=unmap,cache=writeback " +
				"-device scsi-hd,drive=disk0,bus=scsi0.0,bootindex=1 -fw_cfg name=opt/labbake/test,string=1 -device virtio-rng-pci " +
				"-drive file=/out/seed/n1.iso,format=raw,if=none,id=seed,media=cdrom,readonly=on -device scsi-cd,drive=seed,bus=scsi0.0",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(command(tc.opts, tc.m), " ")
			if got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestKVMReason(t *testing.T) {
	for _, tc := range []struct{ err, want string }{
		{"vmtest: kvm failed before any console output: KVM internal error\nqemu: qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\nqemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion failed.",
			"failed to set MSR 0x10a to 0x69"},
		{"vmtest: kvm failed before any console output: qemu exited", "vmtest: kvm failed before any console output: qemu exited"},
	} {
		if got := kvmReason(errors.New(tc.err)); got != tc.want {
			t.Errorf("kvmReason = %q, want %q", got, tc.want)
		}
	}
}
