package tree

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// CapabilityXattr is the extended attribute holding a file's capabilities
// (what setcap writes and the kernel reads at execve).
const CapabilityXattr = "security.capability"

// capNames are the kernel's capabilities by number, as linux/capability.h
// defines them (capabilities(7)): CAP_CHOWN is 0, CAP_CHECKPOINT_RESTORE,
// the last, 40.
var capNames = [...]string{
	"CAP_CHOWN",              // 0
	"CAP_DAC_OVERRIDE",       // 1
	"CAP_DAC_READ_SEARCH",    // 2
	"CAP_FOWNER",             // 3
	"CAP_FSETID",             // 4
	"CAP_KILL",               // 5
	"CAP_SETGID",             // 6
	"CAP_SETUID",             // 7
	"CAP_SETPCAP",            // 8
	"CAP_LINUX_IMMUTABLE",    // 9
	"CAP_NET_BIND_SERVICE",   // 10
	"CAP_NET_BROADCAST",      // 11
	"CAP_NET_ADMIN",          // 12
	"CAP_NET_RAW",            // 13
	"CAP_IPC_LOCK",           // 14
	"CAP_IPC_OWNER",          // 15
	"CAP_SYS_MODULE",         // 16
	"CAP_SYS_RAWIO",          // 17
	"CAP_SYS_CHROOT",         // 18
	"CAP_SYS_PTRACE",         // 19
	"CAP_SYS_PACCT",          // 20
	"CAP_SYS_ADMIN",          // 21
	"CAP_SYS_BOOT",           // 22
	"CAP_SYS_NICE",           // 23
	"CAP_SYS_RESOURCE",       // 24
	"CAP_SYS_TIME",           // 25
	"CAP_SYS_TTY_CONFIG",     // 26
	"CAP_MKNOD",              // 27
	"CAP_LEASE",              // 28
	"CAP_AUDIT_WRITE",        // 29
	"CAP_AUDIT_CONTROL",      // 30
	"CAP_SETFCAP",            // 31
	"CAP_MAC_OVERRIDE",       // 32
	"CAP_MAC_ADMIN",          // 33
	"CAP_SYSLOG",             // 34
	"CAP_WAKE_ALARM",         // 35
	"CAP_BLOCK_SUSPEND",      // 36
	"CAP_AUDIT_READ",         // 37
	"CAP_PERFMON",            // 38
	"CAP_BPF",                // 39
	"CAP_CHECKPOINT_RESTORE", // 40
}

// The layout of struct vfs_cap_data, revision 2 (linux/capability.h).
const (
	vfsCapRevision2      = 0x02000000
	vfsCapFlagsEffective = 0x000001
	vfsCapU32            = 2 // data[] entries of revision 2
)

// Capability returns the canonical name (CAP_NET_BIND_SERVICE) and the
// number of a capability named as setcap and capabilities(7) name it: in
// any case, with or without the CAP_ prefix. ok is false for a name the
// kernel does not define.
func Capability(name string) (canonical string, num int, ok bool) {
	up := strings.ToUpper(name)
	if !strings.HasPrefix(up, "CAP_") {
		up = "CAP_" + up
	}
	i := slices.Index(capNames[:], up)
	if i < 0 {
		return "", 0, false
	}
	return capNames[i], i, true
}

// CapabilityNames lists the canonical names of every capability, in
// number order.
func CapabilityNames() []string {
	return slices.Clone(capNames[:])
}

// FileCapabilities is the security.capability value that
// `setcap NAMES=+ep` writes: struct vfs_cap_data revision 2, little-endian,
// every named capability permitted, the effective flag set, nothing
// inheritable. Names are taken as Capability takes them; the order and
// repeats do not change the bytes. No name is an error.
func FileCapabilities(names []string) ([]byte, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("file capabilities: none named")
	}
	var permitted [vfsCapU32]uint32
	for _, n := range names {
		_, num, ok := Capability(n)
		if !ok {
			return nil, fmt.Errorf("file capabilities: unknown capability %q", n)
		}
		permitted[num/32] |= 1 << (num % 32)
	}
	b := binary.LittleEndian.AppendUint32(nil, vfsCapRevision2|vfsCapFlagsEffective)
	for _, p := range permitted {
		b = binary.LittleEndian.AppendUint32(b, p) // data[i].permitted
		b = binary.LittleEndian.AppendUint32(b, 0) // data[i].inheritable
	}
	return b, nil
}
