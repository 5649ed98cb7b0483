package boot

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"

	"github.com/labbake/labbake/builders/disk"
)

const rootUUID = "f4b4fdbc-2eb4-8b1a-8c29-ffc08365d3c3"

// bootableFiles is a Debian-like tree with systemd-boot and one kernel.
func bootableFiles() map[string]string {
	return map[string]string{
		"/" + SystemdBoot:                      "systemd-boot",
		"/usr/lib/os-release":                  "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\n",
		"/etc/os-release":                      "->../usr/lib/os-release",
		"/boot/vmlinuz-6.12.38+deb13-amd64":    "kernel",
		"/boot/initrd.img-6.12.38+deb13-amd64": "initrd",
	}
}

func TestPrepare(t *testing.T) {
	res, err := Prepare(context.Background(), newTree(t, bootableFiles()), Options{Methods: []string{UEFI}, RootFSUUID: rootUUID, Cmdline: " console=ttyS0,115200  quiet net.ifnames=0"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Loaders, []string{"uefi: systemd-boot"}) || res.Kernel.Version != "6.12.38+deb13-amd64" || res.BIOS != nil || len(res.TreeFiles) != 0 {
		t.Errorf("loaders %q kernel %q BIOS %v tree files %v", res.Loaders, res.Kernel.Version, res.BIOS, res.TreeFiles)
	}
	wantCmdline := "root=UUID=" + rootUUID + " ro console=ttyS0,115200 quiet net.ifnames=0"
	if res.Cmdline != wantCmdline {
		t.Errorf("cmdline %q, want %q", res.Cmdline, wantCmdline)
	}
	got := map[string]string{}
	for _, f := range res.ESPFiles {
		b := f.Data
		if f.Source != "" {
			if b, err = os.ReadFile(f.Source); err != nil {
				t.Fatal(err)
			}
		}
		got[f.Path] = string(b)
	}
	want := map[string]string{
		"EFI/BOOT/BOOTX64.EFI":               "systemd-boot",
		"EFI/systemd/systemd-bootx64.efi":    "systemd-boot",
		"loader/loader.conf":                 "default labbake.conf\ntimeout 0\neditor no\n",
		"labbake/6.12.38+deb13-amd64/linux":  "kernel",
		"labbake/6.12.38+deb13-amd64/initrd": "initrd",
		"loader/entries/labbake.conf": "title Debian GNU/Linux 13 (trixie)\nversion 6.12.38+deb13-amd64\n" +
			"linux /labbake/6.12.38+deb13-amd64/linux\ninitrd /labbake/6.12.38+deb13-amd64/initrd\noptions " + wantCmdline + "\n",
	}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s = %q, want %q", p, got[p], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("ESP files %v, want %d", slices.Sorted(func(yield func(string) bool) {
			for p := range got {
				if !yield(p) {
					return
				}
			}
		}), len(want))
	}
}

func TestPrepareErrors(t *testing.T) {
	noLoader := bootableFiles()
	delete(noLoader, "/"+SystemdBoot)
	noInitrd := bootableFiles()
	delete(noInitrd, "/boot/initrd.img-6.12.38+deb13-amd64")
	bare := map[string]string{"/etc/hostname": "x"}
	cases := []struct {
		name    string
		files   map[string]string
		opts    Options
		want    error
		wantMsg string
	}{
		{"uefi without systemd-boot", noLoader, Options{Methods: []string{UEFI}}, ErrNoUEFILoader, "install systemd-boot-efi"},
		{"bios without grub", bootableFiles(), Options{Methods: []string{BIOS}, WorkDir: t.TempDir()}, ErrNoGrubPC, "install grub-pc-bin"},
		{"bios without grub-mkimage", map[string]string{
			"/boot/vmlinuz-6.12.38+deb13-amd64": "k", "/boot/initrd.img-6.12.38+deb13-amd64": "i", "/" + GrubPCDir + "/boot.img": "b",
		}, Options{Methods: []string{BIOS}, WorkDir: t.TempDir()}, ErrNoGrubMkimage, "install grub-common"},
		{"no kernel", bare, Options{Methods: []string{UEFI, BIOS}}, ErrNoKernel, "install linux-image-amd64"},
		{"loader without kernel", map[string]string{"/" + SystemdBoot: "sd"}, Options{Methods: []string{UEFI}}, ErrNoKernel, ""},
		{"no initramfs", noInitrd, Options{Methods: []string{UEFI}}, ErrNoInitramfs, ""},
		{"pinned kernel missing", bootableFiles(), Options{Methods: []string{UEFI}, Pin: "6.1.0-9-amd64"}, ErrPinnedKernel, "6.12.38+deb13-amd64"},
		{"unknown method", bootableFiles(), Options{Methods: []string{"pxe"}}, nil, `unknown boot method "pxe"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.RootFSUUID = rootUUID
			_, err := Prepare(context.Background(), newTree(t, tc.files), tc.opts)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if tc.want != nil && !IsImageError(err) {
				t.Errorf("IsImageError(%v) = false", err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("err = %v, want it to say %q", err, tc.wantMsg)
			}
		})
	}
}

// TestPrepareNoMethods: an image that is not meant to boot needs neither a
// kernel nor a boot loader and gets nothing.
func TestPrepareNoMethods(t *testing.T) {
	res, err := Prepare(context.Background(), newTree(t, map[string]string{"/etc/hostname": "x"}), Options{RootFSUUID: rootUUID})
	if err != nil || len(res.ESPFiles) != 0 || res.BIOS != nil || len(res.Loaders) != 0 {
		t.Errorf("bare rootfs without methods: %v, %+v", err, res)
	}
}

// TestESP writes the ESP through builders/disk twice and checks it is
// identical, clean for fsck.fat, dated at the epoch everywhere and holds
// the files.
func TestESP(t *testing.T) {
	if _, err := exec.LookPath("mke2fs"); err != nil {
		if _, err := os.Stat("/usr/sbin/mke2fs"); err != nil {
			t.Skip("mke2fs not installed")
		}
	}
	files := bootableFiles()
	// A kernel spanning many clusters.
	big := make([]byte, 3<<20+123)
	for i := range big {
		big[i] = byte(i*7 + i>>9)
	}
	files["/boot/vmlinuz-6.12.38+deb13-amd64"] = string(big)
	tr := newTree(t, files)
	res, err := Prepare(context.Background(), tr, Options{Methods: []string{UEFI}, RootFSUUID: rootUUID, Cmdline: "console=ttyS0,115200 console=tty0"})
	if err != nil {
		t.Fatal(err)
	}
	ids := disk.IDs{
		DiskGUID: "5B3C8A0E-1D8F-4C6B-9E2A-0F1E2D3C4B5A", BIOSGUID: "6B3C8A0E-1D8F-4C6B-9E2A-0F1E2D3C4B5A",
		ESPGUID: "7B3C8A0E-1D8F-4C6B-9E2A-0F1E2D3C4B5A", RootGUID: "8B3C8A0E-1D8F-4C6B-9E2A-0F1E2D3C4B5A",
		RootFSUUID: rootUUID, ESPVolumeID: 0x1234abcd,
	}
	var esps [][]byte
	for range 2 {
		dir := t.TempDir()
		raw := filepath.Join(dir, "disk.raw")
		r, err := disk.Build(context.Background(), tr, raw, disk.Options{
			Size: disk.MinSize, IDs: ids, Epoch: testEpoch, WorkDir: filepath.Join(dir, "work"), ESPFiles: res.ESPFiles,
		})
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(raw)
		if err != nil {
			t.Fatal(err)
		}
		esp := b[r.Layout.ESP.Offset : r.Layout.ESP.Offset+r.Layout.ESP.Size]
		esps = append(esps, esp)
		if len(esps) == 1 {
			path := filepath.Join(dir, "esp.img")
			if err := os.WriteFile(path, esp, 0o644); err != nil {
				t.Fatal(err)
			}
			checkFsck(t, path)
			checkFiles(t, path, int64(len(esp)), res)
			checkTimes(t, esp, 15)
		}
	}
	if !bytes.Equal(esps[0], esps[1]) {
		t.Error("two builds of one tree gave different ESPs")
	}

	// An empty ESP (a tree that does not boot) is clean too.
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	r, err := disk.Build(context.Background(), tr, raw, disk.Options{Size: disk.MinSize, IDs: ids, Epoch: testEpoch, WorkDir: filepath.Join(dir, "work")})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	esp := b[r.Layout.ESP.Offset : r.Layout.ESP.Offset+r.Layout.ESP.Size]
	if err := os.WriteFile(filepath.Join(dir, "esp.img"), esp, 0o644); err != nil {
		t.Fatal(err)
	}
	checkFsck(t, filepath.Join(dir, "esp.img"))
	checkTimes(t, esp, 1)
}

func checkFsck(t *testing.T, path string) {
	fsck, err := exec.LookPath("fsck.fat")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/fsck.fat"); err != nil {
			t.Log("fsck.fat not installed: not checked")
			return
		}
		fsck = "/usr/sbin/fsck.fat"
	}
	out, err := exec.Command(fsck, "-n", path).CombinedOutput()
	if err != nil {
		t.Errorf("fsck.fat -n: %v\n%s", err, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.HasPrefix(l, "fsck.fat ") && !strings.HasPrefix(l, path+": ") {
			t.Errorf("fsck.fat -n complains: %s", out)
			break
		}
	}
}

func checkFiles(t *testing.T, path string, size int64, res *Result) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fs, err := fat32.Read(file.New(f, true), size, 0, 512)
	if err != nil {
		t.Fatal(err)
	}
	for _, ef := range res.ESPFiles {
		want := ef.Data
		if ef.Source != "" {
			if want, err = os.ReadFile(ef.Source); err != nil {
				t.Fatal(err)
			}
		}
		got, err := fs.ReadFile("/" + ef.Path)
		if err != nil {
			t.Errorf("%s: %v", ef.Path, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes differ from the %d written", ef.Path, len(got), len(want))
		}
	}
}

// checkTimes walks every directory of the FAT32 image and checks that each
// short entry, "." and ".." included, carries the epoch, and that ".." of a
// top-level directory points at cluster 0.
func checkTimes(t *testing.T, esp []byte, minEntries int) {
	u16 := func(b []byte) int { return int(binary.LittleEndian.Uint16(b)) }
	bps, spc := u16(esp[11:]), int(esp[13])
	reserved, nfats := u16(esp[14:]), int(esp[16])
	fatSectors := int(binary.LittleEndian.Uint32(esp[36:]))
	root := binary.LittleEndian.Uint32(esp[44:])
	fat := esp[reserved*bps:]
	data := esp[(reserved+nfats*fatSectors)*bps:]
	cb := bps * spc
	wantDate := (testEpoch.Year()-1980)<<9 | int(testEpoch.Month())<<5 | testEpoch.Day()
	wantTime := testEpoch.Hour()<<11 | testEpoch.Minute()<<5 | testEpoch.Second()/2
	type dir struct {
		cluster uint32
		name    string
		top     bool
	}
	queue := []dir{{root, "/", false}}
	entries := 0
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		for c := d.cluster; c >= 2 && c < 0x0FFFFFF8; c = binary.LittleEndian.Uint32(fat[c*4:]) & 0x0FFFFFFF {
			cl := data[int(c-2)*cb : int(c-1)*cb]
			for i := 0; i < len(cl); i += 32 {
				e := cl[i : i+32]
				if e[0] == 0 {
					break
				}
				if e[0] == 0xE5 || e[11] == 0x0F {
					continue
				}
				entries++
				name := strings.TrimSpace(string(e[:11]))
				if u16(e[14:]) != wantTime || u16(e[16:]) != wantDate || u16(e[18:]) != wantDate ||
					u16(e[22:]) != wantTime || u16(e[24:]) != wantDate || e[13] != 0 {
					t.Errorf("%s%s: times %x, want date %04x time %04x", d.name, name, e[13:26], wantDate, wantTime)
				}
				if e[11]&0x10 == 0 || e[11]&0x08 != 0 {
					continue
				}
				cluster := uint32(u16(e[20:]))<<16 | uint32(u16(e[26:]))
				switch name {
				case ".":
				case "..":
					if d.top && cluster != 0 {
						t.Errorf("%s..: cluster %d, want 0 (the root)", d.name, cluster)
					}
				default:
					queue = append(queue, dir{cluster, d.name + name + "/", d.cluster == root})
				}
			}
		}
	}
	if entries < minEntries {
		t.Errorf("only %d directory entries walked", entries)
	}
}
