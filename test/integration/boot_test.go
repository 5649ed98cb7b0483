package integration

import (
	"archive/tar"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestBootMethods builds images of a fake Debian tree through the CLI: what
// disk.boot asks for and the tree lacks is a one-line error at the recipe
// field (exit 2, nothing written); what it has lands in the manifest. The
// real boot loaders are booted by test/e2e.
func TestBootMethods(t *testing.T) {
	const kernel = "6.12.38+deb13-amd64"
	dir := func(name string) tarEntry {
		return tarEntry{&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: time.Unix(epoch, 0)}, ""}
	}
	file := func(name, content string) tarEntry {
		return tarEntry{&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content)), ModTime: time.Unix(epoch, 0)}, content}
	}
	bare := []tarEntry{dir("etc"), file("etc/hostname", "x\n")}
	withKernel := append(slices.Clone(bare), dir("boot"), file("boot/vmlinuz-"+kernel, "kernel"), file("boot/initrd.img-"+kernel, "initrd"))
	withLoader := append(slices.Clone(withKernel), dir("usr"), dir("usr/lib"), dir("usr/lib/systemd"), dir("usr/lib/systemd/boot"),
		dir("usr/lib/systemd/boot/efi"), file("usr/lib/systemd/boot/efi/systemd-bootx64.efi", "MZ systemd-boot"))

	for _, tc := range []struct {
		name   string
		base   []tarEntry
		recipe string
		errs   []string // "" parts: the build succeeds
	}{
		{"default needs a kernel", bare, "disk: {size: 300MiB}\n",
			[]string{"recipes/master.yaml:1:1: disk.boot: no kernel in the image: install linux-image-amd64", "disk.boot: [] makes an image that is not meant to boot"}},
		{"uefi needs systemd-boot", withKernel, "disk: {size: 300MiB, boot: [uefi]}\n",
			[]string{"recipes/master.yaml:2:28: disk.boot: uefi: no UEFI boot loader in the image: install systemd-boot-efi"}},
		{"bios needs grub", withLoader, "disk:\n  size: 300MiB\n  boot: [bios, uefi]\n",
			[]string{"recipes/master.yaml:4:9: disk.boot: bios: no GRUB for BIOS in the image: install grub-pc-bin"}},
		{"pinned kernel missing", withLoader, "disk: {size: 300MiB, boot: [uefi]}\nkernel: {version: 6.1.0-9-amd64}\n",
			[]string{"recipes/master.yaml:3:9: kernel.version: kernel \"6.1.0-9-amd64\": pinned kernel not in the image (found " + kernel + ")"}},
		{"uefi with systemd-boot", withLoader, "disk: {size: 300MiB, boot: [uefi]}\nkernel: {version: " + kernel + ", cmdline: console=ttyS0 quiet}\n", nil},
		{"not meant to boot", bare, "disk: {size: 300MiB, boot: []}\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := t.TempDir()
			mkfile(t, lab, "lab.yaml", "name: boot\nepoch: 1700000000\nnodes:\n  - {name: master, role: master, ip: 172.18.0.2}\n")
			writeTar(t, filepath.Join(lab, "base.tar"), tc.base)
			mkfile(t, lab, "recipes/master.yaml", "base: {tar: base.tar}\n"+tc.recipe)
			out := filepath.Join(t.TempDir(), "out")
			_, stderr, code := labbake(t, nil, "-C", lab, "--out", out, "--cache", t.TempDir(), "build", "master", "--keep-raw")
			if tc.errs != nil {
				if code != 2 {
					t.Fatalf("exit %d, want 2:\n%s", code, stderr)
				}
				for _, e := range tc.errs {
					if !strings.Contains(stderr, e) {
						t.Errorf("stderr lacks %q:\n%s", e, stderr)
					}
				}
				if _, err := os.Stat(filepath.Join(out, "master.qcow2")); err == nil {
					t.Error("an image was written")
				}
				return
			}
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, stderr)
			}
			m := readManifest(t, filepath.Join(out, "master.manifest.json"))
			if o, err := runTool(t, "sgdisk", "-v", filepath.Join(out, "master.raw")); err != nil || !strings.Contains(o, "No problems found") {
				t.Errorf("sgdisk -v: %v\n%s", err, o)
			}
			if tc.name == "not meant to boot" {
				if len(m.Boot.Methods) != 0 || m.Boot.Kernel != "" || len(m.Boot.Loaders) != 0 {
					t.Errorf("manifest boot %+v, want nothing", m.Boot)
				}
				return
			}
			// Another cache and another day give the same bytes.
			out2 := filepath.Join(t.TempDir(), "out")
			if _, stderr, code := labbake(t, nil, "-C", lab, "--out", out2, "--cache", t.TempDir(), "build", "master"); code != 0 {
				t.Fatalf("second build: exit %d:\n%s", code, stderr)
			}
			if a, b := sha256File(t, filepath.Join(out, "master.qcow2")), sha256File(t, filepath.Join(out2, "master.qcow2")); a != b {
				t.Errorf("two builds differ: %s, %s", a, b)
			}
			want := "root=UUID=" + m.Root.UUID + " ro console=ttyS0 quiet"
			if !slices.Equal(m.Boot.Methods, []string{"uefi"}) || m.Boot.Kernel != kernel || m.Boot.Linux != "/boot/vmlinuz-"+kernel ||
				m.Boot.Initrd != "/boot/initrd.img-"+kernel || !slices.Equal(m.Boot.Loaders, []string{"uefi: systemd-boot"}) || m.Boot.Cmdline != want {
				t.Errorf("manifest boot %+v, want uefi, %s, systemd-boot, %q", m.Boot, kernel, want)
			}
		})
	}
}
