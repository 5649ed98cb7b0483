package tree

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCapability(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		num        int
	}{
		{"CAP_NET_BIND_SERVICE", "CAP_NET_BIND_SERVICE", 10},
		{"cap_net_bind_service", "CAP_NET_BIND_SERVICE", 10},
		{"net_bind_service", "CAP_NET_BIND_SERVICE", 10},
		{"Net_Raw", "CAP_NET_RAW", 13},
		{"chown", "CAP_CHOWN", 0},
		{"CAP_SETFCAP", "CAP_SETFCAP", 31},
		{"mac_override", "CAP_MAC_OVERRIDE", 32},
		{"cap_checkpoint_restore", "CAP_CHECKPOINT_RESTORE", 40},
		{"", "", -1},
		{"CAP_", "", -1},
		{"CAP_CAP_CHOWN", "", -1},
		{"net-bind-service", "", -1},
		{" CAP_CHOWN", "", -1},
		{"CAP_LAST_CAP", "", -1},
		{"all", "", -1},
	} {
		got, num, ok := Capability(tc.name)
		if ok != (tc.num >= 0) || got != tc.want || (ok && num != tc.num) {
			t.Errorf("Capability(%q) = %q, %d, %v; want %q, %d", tc.name, got, num, ok, tc.want, tc.num)
		}
	}
	if names := CapabilityNames(); len(names) != 41 || names[0] != "CAP_CHOWN" || names[40] != "CAP_CHECKPOINT_RESTORE" {
		t.Errorf("CapabilityNames() = %v", names)
	}
}

// The names and numbers are those of the kernel headers, where installed
// (linux-libc-dev): every #define CAP_NAME NUMBER up to CAP_LAST_CAP.
func TestCapabilityHeader(t *testing.T) {
	h, err := os.ReadFile("/usr/include/linux/capability.h")
	if err != nil {
		t.Skip(err)
	}
	defs := map[int]string{}
	for _, m := range regexp.MustCompile(`(?m)^#define\s+(CAP_[A-Z_]+)\s+(\d+)\s*$`).FindAllSubmatch(h, -1) {
		n, _ := strconv.Atoi(string(m[2]))
		defs[n] = string(m[1])
	}
	last := regexp.MustCompile(`(?m)^#define\s+CAP_LAST_CAP\s+(CAP_[A-Z_]+)`).FindSubmatch(h)
	if last == nil || len(defs) == 0 {
		t.Fatalf("no capability in the header:\n%.500s", h)
	}
	for n := 0; n < len(capNames); n++ {
		if defs[n] != capNames[n] {
			t.Errorf("capability %d: header %q, capNames %q", n, defs[n], capNames[n])
		}
	}
	if got := capNames[len(capNames)-1]; string(last[1]) != got {
		t.Logf("the header's CAP_LAST_CAP is %s, ours %s: a newer kernel's capabilities are not named here", last[1], got)
	}
}

// The bytes are those of the real tool: each want was obtained with
// libcap2-bin 1:2.66 and attr 1:2.5.1 on Debian 12 as root,
//
//	touch f; setcap SPEC f; getfattr -n security.capability -e hex f
//
// with the SPEC of the comment.
func TestFileCapabilities(t *testing.T) {
	for _, tc := range []struct {
		spec  string // as setcap took it
		names []string
		want  string // getfattr's hex
	}{
		{"cap_net_bind_service=+ep", []string{"CAP_NET_BIND_SERVICE"}, "0100000200040000000000000000000000000000"},
		{"cap_net_bind_service,cap_net_raw=+ep", []string{"net_raw", "cap_net_bind_service", "NET_RAW"}, "0100000200240000000000000000000000000000"},
		{"cap_chown,cap_bpf,cap_checkpoint_restore=+ep", []string{"CAP_CHECKPOINT_RESTORE", "bpf", "chown"}, "0100000201000000000000008001000000000000"},
		{"cap_setfcap,cap_mac_override=+ep", []string{"setfcap", "mac_override"}, "0100000200000080000000000100000000000000"},
	} {
		got, err := FileCapabilities(tc.names)
		if err != nil {
			t.Errorf("%s: %v", tc.spec, err)
			continue
		}
		if hex.EncodeToString(got) != tc.want {
			t.Errorf("%s: FileCapabilities(%q) = %x, want %s", tc.spec, tc.names, got, tc.want)
		}
		compareSetcap(t, tc.spec, got)
	}
	for _, names := range [][]string{nil, {}, {"CAP_NET_BIND"}, {"chown", "nope"}} {
		if b, err := FileCapabilities(names); err == nil {
			t.Errorf("FileCapabilities(%q) = %x, want an error", names, b)
		}
	}
}

// compareSetcap checks want against what setcap spec writes here, where
// setcap runs (as root, on a file system with security xattrs).
func compareSetcap(t *testing.T, spec string, want []byte) {
	t.Helper()
	setcap, err := exec.LookPath("setcap")
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if _, err := os.Stat(filepath.Join(dir, "setcap")); err == nil {
				setcap = filepath.Join(dir, "setcap")
			}
		}
	}
	if setcap == "" {
		return
	}
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(setcap, spec, f).CombinedOutput(); err != nil {
		t.Logf("setcap %s: %v %s (not compared)", spec, err, strings.TrimSpace(string(out)))
		return
	}
	buf := make([]byte, 64)
	n, err := unix.Getxattr(f, CapabilityXattr, buf)
	if err != nil {
		t.Errorf("setcap %s wrote no %s: %v", spec, CapabilityXattr, err)
		return
	}
	if !bytes.Equal(buf[:n], want) {
		t.Errorf("setcap %s writes %x, FileCapabilities %x", spec, buf[:n], want)
	}
}
