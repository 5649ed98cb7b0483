package boot

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/labbake/labbake/builders/tree"
)

var testEpoch = time.Unix(1735689600, 0).UTC() // 2025-01-01

// newTree returns a tree holding files: a value starting with "->" makes a
// symlink to the rest, anything else a regular file with that content.
func newTree(t *testing.T, files map[string]string) *tree.Tree {
	t.Helper()
	tr := tree.New(testEpoch)
	var fs []tree.File
	for p, c := range files {
		if target, ok := strings.CutPrefix(c, "->"); ok {
			fs = append(fs, tree.File{Path: p, Symlink: target})
		} else {
			fs = append(fs, tree.File{Path: p, Content: []byte(c)})
		}
	}
	// Symlinks in parent components must exist before what goes through
	// them: add the shortest paths first.
	for i := range fs {
		for j := i + 1; j < len(fs); j++ {
			if strings.Count(fs[j].Path, "/") < strings.Count(fs[i].Path, "/") ||
				(strings.Count(fs[j].Path, "/") == strings.Count(fs[i].Path, "/") && fs[j].Path < fs[i].Path) {
				fs[i], fs[j] = fs[j], fs[i]
			}
		}
	}
	if err := tr.AddFiles(fs, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestFindKernel(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   map[string]string
		pin     string
		version string // want
		linux   string // want: tree path
		initrd  string // want: tree path
		content string // want: the kernel blob's bytes
		err     error
		errText string
	}{
		{
			name: "debian",
			files: map[string]string{
				"/boot/vmlinuz-6.1.0-13-amd64":    "k13",
				"/boot/initrd.img-6.1.0-13-amd64": "i13",
				"/boot/config-6.1.0-13-amd64":     "cfg",
			},
			version: "6.1.0-13-amd64", linux: "boot/vmlinuz-6.1.0-13-amd64", initrd: "boot/initrd.img-6.1.0-13-amd64", content: "k13",
		},
		{
			name: "several versions: the highest",
			files: map[string]string{
				"/boot/vmlinuz-6.1.0-9-amd64":          "k9",
				"/boot/initrd.img-6.1.0-9-amd64":       "i9",
				"/boot/vmlinuz-6.1.0-13-amd64":         "k13",
				"/boot/initrd.img-6.1.0-13-amd64":      "i13",
				"/boot/vmlinuz-6.12.38+deb13-amd64":    "k612",
				"/boot/initrd.img-6.12.38+deb13-amd64": "i612",
				"/vmlinuz":                             "->boot/vmlinuz-6.1.0-13-amd64",
			},
			version: "6.12.38+deb13-amd64", linux: "boot/vmlinuz-6.12.38+deb13-amd64", initrd: "boot/initrd.img-6.12.38+deb13-amd64", content: "k612",
		},
		{
			name: "pin",
			files: map[string]string{
				"/boot/vmlinuz-6.1.0-9-amd64":     "k9",
				"/boot/initrd.img-6.1.0-9-amd64":  "i9",
				"/boot/vmlinuz-6.1.0-13-amd64":    "k13",
				"/boot/initrd.img-6.1.0-13-amd64": "i13",
			},
			pin:     "6.1.0-9-amd64",
			version: "6.1.0-9-amd64", linux: "boot/vmlinuz-6.1.0-9-amd64", initrd: "boot/initrd.img-6.1.0-9-amd64", content: "k9",
		},
		{
			name: "pin not in the image",
			files: map[string]string{
				"/boot/vmlinuz-6.1.0-13-amd64":    "k13",
				"/boot/initrd.img-6.1.0-13-amd64": "i13",
			},
			pin: "6.1.0-9-amd64", err: ErrPinnedKernel, errText: `kernel "6.1.0-9-amd64": pinned kernel not in the image (found 6.1.0-13-amd64)`,
		},
		{
			name: "symlink /vmlinuz to a kernel outside /boot",
			files: map[string]string{
				"/vmlinuz":                        "->opt/kernels/vmlinuz-6.5.0-1",
				"/initrd.img":                     "->opt/kernels/initrd.img-6.5.0-1",
				"/opt/kernels/vmlinuz-6.5.0-1":    "k65",
				"/opt/kernels/initrd.img-6.5.0-1": "i65",
			},
			version: "6.5.0-1", linux: "opt/kernels/vmlinuz-6.5.0-1", initrd: "opt/kernels/initrd.img-6.5.0-1", content: "k65",
		},
		{
			name: "symlinks followed inside the tree",
			files: map[string]string{
				// An absolute target, a ".." above the root, a symlinked dir.
				"/boot/vmlinuz-6.1.0-13-amd64":    "->/../store/k",
				"/boot/initrd.img-6.1.0-13-amd64": "->../../../data/i",
				"/data":                           "->store",
				"/store/k":                        "k13",
				"/store/i":                        "i13",
			},
			version: "6.1.0-13-amd64", linux: "store/k", initrd: "store/i", content: "k13",
		},
		{
			name: "boot is a symlink",
			files: map[string]string{
				"/boot":                          "->efi",
				"/efi/vmlinuz-6.1.0-13-amd64":    "k13",
				"/efi/initrd.img-6.1.0-13-amd64": "i13",
			},
			version: "6.1.0-13-amd64", linux: "efi/vmlinuz-6.1.0-13-amd64", initrd: "efi/initrd.img-6.1.0-13-amd64", content: "k13",
		},
		{
			name: "bootable container",
			files: map[string]string{
				"/lib": "->usr/lib",
				"/usr/lib/modules/6.14.0-63.fc42.x86_64/vmlinuz":       "kf",
				"/usr/lib/modules/6.14.0-63.fc42.x86_64/initramfs.img": "if",
				"/usr/lib/modules/6.14.0-63.fc42.x86_64/modules.dep":   "",
			},
			version: "6.14.0-63.fc42.x86_64", linux: "usr/lib/modules/6.14.0-63.fc42.x86_64/vmlinuz", initrd: "usr/lib/modules/6.14.0-63.fc42.x86_64/initramfs.img", content: "kf",
		},
		{
			name: "both layouts: the highest version",
			files: map[string]string{
				"/boot/vmlinuz-6.1.0-13-amd64":                "k13",
				"/boot/initrd.img-6.1.0-13-amd64":             "i13",
				"/usr/lib/modules/6.1.0-13-amd64/modules.dep": "",
				"/usr/lib/modules/6.14.0-1/vmlinuz":           "k614",
				"/usr/lib/modules/6.14.0-1/initramfs.img":     "i614",
			},
			version: "6.14.0-1", linux: "usr/lib/modules/6.14.0-1/vmlinuz", initrd: "usr/lib/modules/6.14.0-1/initramfs.img", content: "k614",
		},
		{
			name: "none",
			files: map[string]string{
				"/etc/hostname": "x",
				"/usr/lib/modules/6.1.0-13-amd64/modules.dep": "",
				"/vmlinuz": "->boot/vmlinuz-6.1.0-13-amd64", // dangling
			},
			err: ErrNoKernel, errText: "no kernel in the image: install linux-image-amd64",
		},
		{
			name: "no initramfs",
			files: map[string]string{
				"/boot/vmlinuz-6.1.0-13-amd64": "k13",
			},
			err: ErrNoInitramfs, errText: "kernel 6.1.0-13-amd64 (/boot/vmlinuz-6.1.0-13-amd64): no initramfs (looked for /boot/initrd.img-6.1.0-13-amd64, /usr/lib/modules/6.1.0-13-amd64/initramfs.img): install initramfs-tools or dracut",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := FindKernel(newTree(t, tc.files), tc.pin)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.errText) {
					t.Fatalf("err = %v, want %v containing %q", err, tc.err, tc.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.Version != tc.version || k.Linux != tc.linux || k.Initrd != tc.initrd {
				t.Errorf("got %s %s %s, want %s %s %s", k.Version, k.Linux, k.Initrd, tc.version, tc.linux, tc.initrd)
			}
			if b, err := os.ReadFile(k.LinuxBlob); err != nil || string(b) != tc.content {
				t.Errorf("kernel blob holds %q (%v), want %q", b, err, tc.content)
			}
			if _, err := os.Stat(k.InitrdBlob); err != nil {
				t.Errorf("initrd blob: %v", err)
			}
		})
	}
}
