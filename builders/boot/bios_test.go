package boot

import (
	"bytes"
	"context"
	"debug/elf"
	"debug/pe"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ulikunitz/xz/lzma"

	"github.com/labbake/labbake/builders/disk"
	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/golden"
)

// blocklist is one entry of diskboot.img's block list.
type blocklist struct {
	start   uint64
	len     uint16
	segment uint16
}

func (b blocklist) put(dst []byte) {
	binary.LittleEndian.PutUint64(dst, b.start)
	binary.LittleEndian.PutUint16(dst[8:], b.len)
	binary.LittleEndian.PutUint16(dst[10:], b.segment)
}

func readBlocklist(src []byte) blocklist {
	return blocklist{binary.LittleEndian.Uint64(src), binary.LittleEndian.Uint16(src[8:]), binary.LittleEndian.Uint16(src[10:])}
}

// pattern returns n bytes that are never 0 and differ from their
// neighbours.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i%251) + seed | 1
	}
	return b
}

// firstDiff describes where got and want first differ.
func firstDiff(got, want []byte) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d bytes, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at %#x: % x, want % x", i, got[i:min(i+8, len(got))], want[i:min(i+8, len(want))])
		}
	}
	return ""
}

// wantMBR is boot.img's first 440 bytes as grub-setup leaves them for
// core.img at coreLBA on a hard disk (offsets from GRUB's
// include/grub/i386/pc/boot.h, written out here rather than taken from
// bios.go).
func wantMBR(boot []byte, coreLBA uint64) []byte {
	m := slices.Clone(boot[:440])
	clear(m[0x03:0x5A])                              // no BPB on a GPT disk
	binary.LittleEndian.PutUint64(m[0x5C:], coreLBA) // GRUB_BOOT_MACHINE_KERNEL_SECTOR
	m[0x64] = 0xFF                                   // GRUB_BOOT_MACHINE_BOOT_DRIVE
	m[0x66], m[0x67] = 0x90, 0x90                    // GRUB_BOOT_MACHINE_DRIVE_CHECK: the jmp NOPed
	return m
}

func TestPatchGRUB(t *testing.T) {
	boot := pattern(512, 0x40)
	boot[0], boot[1], boot[2] = 0xEB, 0x63, 0x90 // jmp over the BPB
	for _, tc := range []struct {
		name    string
		size    int         // of core.img
		entries []blocklist // diskboot.img's, from the end of the first sector down; a terminator follows
		coreLBA uint64
		maxSize int64
	}{
		{
			name: "grub-mkimage's default entry", size: 3*512 + 256,
			entries: []blocklist{{start: 2, len: 3, segment: 0x820}},
			coreLBA: 2048, maxSize: 1 << 20,
		},
		{
			name: "older entries cleared", size: 3*512 + 256,
			entries: []blocklist{{start: 2, len: 3, segment: 0x820}, {start: 9, len: 7, segment: 0x1020}, {start: 0xFFFFFFFFFFFF, len: 0xFFFF, segment: 0xFFFF}},
			coreLBA: 2048, maxSize: 1 << 20,
		},
		{
			name: "no entries", size: 3*512 + 256,
			coreLBA: 2048, maxSize: 1 << 20,
		},
		{
			name: "two whole sectors filling the partition", size: 1024,
			entries: []blocklist{{start: 2, len: 1, segment: 0x820}},
			coreLBA: 34, maxSize: 1024,
		},
		{
			name: "a 64-bit sector", size: 40*512 + 1,
			entries: []blocklist{{start: 2, len: 40, segment: 0x820}},
			coreLBA: 0x0102030405060708, maxSize: 1 << 20,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core := pattern(tc.size, 0x80)
			off := 512 - 12
			for _, e := range tc.entries {
				e.put(core[off:])
				off -= 12
			}
			// The terminator: a zero length; the rest is kept as it is.
			terminator := off
			blocklist{start: 0x1122334455667788, len: 0, segment: 0xABCD}.put(core[terminator:])
			bootIn, coreIn := slices.Clone(boot), slices.Clone(core)

			code, err := patchGRUB(boot, core, tc.coreLBA, tc.maxSize)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(boot, bootIn) || !bytes.Equal(core, coreIn) {
				t.Error("patchGRUB changed its inputs")
			}
			if d := firstDiff(code.MBRCode, wantMBR(boot, tc.coreLBA)); d != "" {
				t.Errorf("MBR code: %s", d)
			}

			sectors := (tc.size + 511) / 512
			want := make([]byte, sectors*512) // padded with zeros
			copy(want, core)
			for o := 512 - 12; o > terminator; o -= 12 {
				clear(want[o : o+12])
			}
			blocklist{start: tc.coreLBA + 1, len: uint16(sectors - 1), segment: 0x820}.put(want[500:])
			if d := firstDiff(code.Core, want); d != "" {
				t.Errorf("core.img: %s", d)
			}
			if len(code.Core)%512 != 0 || int64(len(code.Core)) > tc.maxSize {
				t.Errorf("core.img is %d bytes", len(code.Core))
			}
			if got := readBlocklist(code.Core[500:]); got != (blocklist{tc.coreLBA + 1, uint16(sectors - 1), 0x820}) {
				t.Errorf("block list %+v", got)
			}
			if got := readBlocklist(code.Core[terminator:]); terminator != 500 && got != (blocklist{0x1122334455667788, 0, 0xABCD}) {
				t.Errorf("terminator %+v changed", got)
			}
		})
	}
}

func TestPatchGRUBErrors(t *testing.T) {
	core := make([]byte, 3*512)
	blocklist{start: 2, len: 2, segment: 0x820}.put(core[500:])
	for _, tc := range []struct {
		name    string
		boot    []byte
		core    []byte
		maxSize int64
		want    string
	}{
		{"boot.img short", make([]byte, 511), core, 1 << 20, "boot.img is 511 bytes, not 512"},
		{"boot.img long", make([]byte, 1024), core, 1 << 20, "boot.img is 1024 bytes, not 512"},
		{"boot.img missing", nil, core, 1 << 20, "boot.img is 0 bytes"},
		{"core.img one sector", make([]byte, 512), core[:1023], 1 << 20, "core.img is only 1023 bytes"},
		{"core.img empty", make([]byte, 512), nil, 1 << 20, "core.img is only 0 bytes"},
		{"core.img too big", make([]byte, 512), core, 1024, "core.img is 1536 bytes, more than the 1024-byte BIOS boot partition"},
		{"core.img too big once padded", make([]byte, 512), core[:1025], 1025, "core.img is 1025 bytes, more than the 1025-byte"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, err := patchGRUB(tc.boot, tc.core, 2048, tc.maxSize)
			if err == nil {
				t.Fatalf("no error, got %d+%d bytes", len(code.MBRCode), len(code.Core))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want %q", err, tc.want)
			}
		})
	}
}

func TestGrubConfig(t *testing.T) {
	k := Kernel{Version: "6.12.38+deb13-amd64", Linux: "boot/vmlinuz-6.12.38+deb13-amd64", Initrd: "boot/initrd.img-6.12.38+deb13-amd64"}
	cmdline := "root=UUID=" + rootUUID + " ro console=ttyS0,115200 acpi_osi=!Linux it's quiet"
	got := grubConfig("Bob's GNU/Linux 1 (test)", rootUUID, k, cmdline)
	golden.Check(t, filepath.Join("testdata", "grub.cfg.golden"), got)
	// Each word of the command line comes back from GRUB's parser as it
	// was given.
	for _, line := range strings.Split(string(got), "\n") {
		rest, ok := strings.CutPrefix(line, "\tlinux ")
		if !ok {
			continue
		}
		words, err := grubWords(rest)
		if err != nil {
			t.Fatal(err)
		}
		if w := append([]string{"/" + k.Linux}, strings.Fields(cmdline)...); !slices.Equal(words, w) {
			t.Errorf("linux line parses as %q, want %q", words, w)
		}
	}
}

func TestGrubQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"quiet", "quiet"},
		{"console=ttyS0,115200", "console=ttyS0,115200"},
		{"root=UUID=" + rootUUID, "root=UUID=" + rootUUID},
		{"/boot/vmlinuz-6.12.38+deb13-amd64", "/boot/vmlinuz-6.12.38+deb13-amd64"},
		{"rd.luks.options=discard,timeout=10%", "rd.luks.options=discard,timeout=10%"},
		{"a@b:c_d", "a@b:c_d"},
		{"", "''"},
		{"Loading Linux 6.1 ...", "'Loading Linux 6.1 ...'"},
		{"$root", "'$root'"},
		{"${prefix}/x", "'${prefix}/x'"},
		{"a;reboot", "'a;reboot'"},
		{"a|b&c", "'a|b&c'"},
		{"<x>", "'<x>'"},
		{"(hd0,gpt2)", "'(hd0,gpt2)'"},
		{"{", "'{'"},
		{"#comment", "'#comment'"},
		{"*", "'*'"},
		{`"quoted"`, `'"quoted"'`},
		{`back\slash`, `'back\slash'`},
		{"tab\there", "'tab\there'"},
		{"it's", `'it'\''s'`},
		{"'", `''\'''`},
		{"Debian GNU/Linux 13 (trixie)", "'Debian GNU/Linux 13 (trixie)'"},
		{"héllo", "'héllo'"},
	} {
		if got := grubQuote(tc.in); got != tc.want {
			t.Errorf("grubQuote(%q) = %s, want %s", tc.in, got, tc.want)
		}
		if words, err := grubWords(grubQuote(tc.in)); err != nil || len(words) != 1 || words[0] != tc.in {
			t.Errorf("grubQuote(%q) = %s parses as %q, %v", tc.in, grubQuote(tc.in), words, err)
		}
	}
}

// grubWords splits a line into words as GRUB's script lexer does for the
// quoting grubQuote uses: single quotes keep everything literal, a
// backslash outside quotes escapes the next character; it fails on the
// characters that would mean something else unquoted.
func grubWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted:
			if c == '\'' {
				quoted = false
			} else {
				w.WriteByte(c)
			}
		case c == '\'':
			quoted, inWord = true, true
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case strings.IndexByte("$;|&<>(){}\"#*?[]\\\n", c) >= 0 || c >= 0x80:
			return nil, fmt.Errorf("%q: unquoted %q", s, c)
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("%q: unterminated quote", s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// Host files of Debian's grub-pc-bin and grub-common.
const (
	hostGrubPC       = "/usr/lib/grub/i386-pc"
	hostGrubMkimage  = "/usr/bin/grub-mkimage"
	grubTestKernel   = "6.1.0-1-amd64"
	grubTestCmdline  = "console=ttyS0,115200 quiet"
	lzmaDecompressor = hostGrubPC + "/lzma_decompress.img"
)

// TestPrepareBIOSReal makes BIOS boot code with the host's GRUB (Debian's
// grub-pc-bin and grub-common) in a tree laid out like the host, and
// checks it byte by byte against the host's GRUB images.
func TestPrepareBIOSReal(t *testing.T) {
	needAMD64(t)
	for _, p := range []string{hostGrubPC + "/boot.img", hostGrubPC + "/diskboot.img", lzmaDecompressor, hostGrubMkimage} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("no GRUB for BIOS on this host (%v): apt-get install grub-pc-bin grub-common", err)
		}
	}
	tr := tree.New(testEpoch)
	addHostProgram(t, tr, hostGrubMkimage)
	ents, err := os.ReadDir(hostGrubPC)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Type().IsRegular() || e.Type()&os.ModeSymlink != 0 {
			addHostFile(t, tr, filepath.Join(hostGrubPC, e.Name()))
		}
	}
	addFiles(t, tr,
		tree.File{Path: "/boot/vmlinuz-" + grubTestKernel, Content: []byte("kernel")},
		tree.File{Path: "/boot/initrd.img-" + grubTestKernel, Content: []byte("initrd")},
		tree.File{Path: "/etc/os-release", Content: []byte("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")},
	)

	res, err := Prepare(context.Background(), tr, Options{Methods: []string{BIOS}, RootFSUUID: rootUUID, Cmdline: grubTestCmdline, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Loaders, []string{"bios: grub i386-pc"}) || res.Kernel.Version != grubTestKernel || len(res.ESPFiles) != 0 {
		t.Errorf("loaders %q, kernel %q, ESP files %d", res.Loaders, res.Kernel.Version, len(res.ESPFiles))
	}
	if res.BIOS == nil {
		t.Fatal("no BIOS code")
	}
	coreLBA := uint64(disk.BIOSOffset / 512)
	if coreLBA != 2048 {
		t.Errorf("BIOS boot partition at sector %d", coreLBA)
	}

	// boot.img: the host's, patched.
	hostBoot := readHost(t, hostGrubPC+"/boot.img")
	if len(res.BIOS.MBRCode) != 440 {
		t.Errorf("MBR code is %d bytes", len(res.BIOS.MBRCode))
	}
	if d := firstDiff(res.BIOS.MBRCode, wantMBR(hostBoot, coreLBA)); d != "" {
		t.Errorf("MBR code: %s", d)
	}

	// core.img: diskboot.img with the block list, lzma_decompress.img with
	// the sizes, the LZMA-compressed kernel and modules, zeros to the
	// sector's end.
	core := res.BIOS.Core
	if len(core)%512 != 0 || int64(len(core)) > disk.BIOSSize || len(core) < 3*512 {
		t.Fatalf("core.img is %d bytes", len(core))
	}
	sectors := len(core) / 512
	diskboot := readHost(t, hostGrubPC+"/diskboot.img")
	if d := firstDiff(core[:500], diskboot[:500]); d != "" {
		t.Errorf("core.img's first sector is not diskboot.img: %s", d)
	}
	if got, want := readBlocklist(core[500:]), (blocklist{coreLBA + 1, uint16(sectors - 1), 0x820}); got != want {
		t.Errorf("block list %+v, want %+v", got, want)
	}
	decomp := readHost(t, lzmaDecompressor)
	head := core[512 : 512+len(decomp)]
	compressed := binary.LittleEndian.Uint32(head[0x08:]) // GRUB_DECOMPRESSOR_I386_PC_COMPRESSED_SIZE
	uncompressed := binary.LittleEndian.Uint32(head[0x0C:])
	wantHead := slices.Clone(decomp)
	copy(wantHead[0x08:0x10], head[0x08:0x10])
	if d := firstDiff(head, wantHead); d != "" {
		t.Errorf("core.img's decompressor is not lzma_decompress.img: %s", d)
	}
	end := 512 + len(decomp) + int(compressed)
	if end > len(core) || len(core)-end >= 512 {
		t.Fatalf("core.img is %d bytes, its compressed part ends at %d", len(core), end)
	}
	if strings.Trim(string(core[end:]), "\x00") != "" {
		t.Error("core.img is padded with something else than zeros")
	}

	// The early configuration is in the compressed part, not in plain
	// text: unpack it (grub-mkimage writes a raw LZMA stream with lc=3,
	// lp=0, pb=2 and a 64 KiB dictionary, without end marker).
	if bytes.Contains(core, []byte(rootUUID)) {
		t.Error("the early configuration is in plain text in core.img: it should be compressed")
	}
	var hdr [13]byte
	hdr[0] = (2*5+0)*9 + 3
	binary.LittleEndian.PutUint32(hdr[1:], 1<<16)
	binary.LittleEndian.PutUint64(hdr[5:], uint64(uncompressed))
	zr, err := lzma.NewReader(io.MultiReader(bytes.NewReader(hdr[:]), bytes.NewReader(core[512+len(decomp):end])))
	if err != nil {
		t.Fatal(err)
	}
	kernel, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("unpacking core.img: %v", err)
	}
	if len(kernel) != int(uncompressed) {
		t.Errorf("core.img unpacks to %d bytes, want %d", len(kernel), uncompressed)
	}
	mods, cfgs, prefixes := grubObjects(t, kernel)
	for _, m := range []string{"biosdisk", "part_gpt", "ext2", "search_fs_uuid", "search", "normal", "linux", "echo", "test", "serial", "terminal"} {
		if !slices.Contains(mods, m) {
			t.Errorf("core.img lacks module %s (it has %s)", m, strings.Join(mods, " "))
		}
	}
	wantCfg := "search.fs_uuid " + rootUUID + " root\nset prefix=($root)/boot/grub\n"
	if !slices.Equal(cfgs, []string{wantCfg}) {
		t.Errorf("core.img's early configuration %q, want %q", cfgs, wantCfg)
	}
	if !slices.Equal(prefixes, []string{"/boot/grub"}) {
		t.Errorf("core.img's prefix %q", prefixes)
	}

	// /boot/grub/grub.cfg goes into the root file system.
	if len(res.TreeFiles) != 1 || res.TreeFiles[0].Path != "/boot/grub/grub.cfg" {
		t.Fatalf("tree files %+v", res.TreeFiles)
	}
	grubCfg := string(res.TreeFiles[0].Content)
	for _, want := range []string{
		"\tsearch --no-floppy --fs-uuid --set=root " + rootUUID + "\n",
		"\tlinux /boot/vmlinuz-" + grubTestKernel + " root=UUID=" + rootUUID + " ro " + grubTestCmdline + "\n",
		"\tinitrd /boot/initrd.img-" + grubTestKernel + "\n",
		"menuentry 'Debian GNU/Linux 12 (bookworm)' --id labbake {\n",
	} {
		if !strings.Contains(grubCfg, want) {
			t.Errorf("grub.cfg lacks %q:\n%s", want, grubCfg)
		}
	}

	// Equal inputs, equal bytes.
	again, err := Prepare(context.Background(), tr, Options{Methods: []string{BIOS}, RootFSUUID: rootUUID, Cmdline: grubTestCmdline, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.BIOS.MBRCode, res.BIOS.MBRCode) || !bytes.Equal(again.BIOS.Core, res.BIOS.Core) {
		t.Error("two runs gave different boot code")
	}
	if len(again.TreeFiles) != 1 || !bytes.Equal(again.TreeFiles[0].Content, res.TreeFiles[0].Content) {
		t.Error("two runs gave different grub.cfg")
	}

	// Another root file system: another early configuration, same boot.img.
	const otherUUID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	other, err := Prepare(context.Background(), tr, Options{Methods: []string{BIOS}, RootFSUUID: otherUUID, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(other.BIOS.MBRCode, res.BIOS.MBRCode) || bytes.Equal(other.BIOS.Core, res.BIOS.Core) {
		t.Error("another root UUID: want the same MBR code and another core.img")
	}
}

func readHost(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// grubObjects reads the module area at the end of an unpacked i386-pc
// core.img (include/grub/kernel.h: struct grub_module_info32, "mimg", then
// objects of uint32 type and size): the names of the ELF modules (their
// .modname), the early configurations (OBJ_TYPE_CONFIG) and the prefixes
// (OBJ_TYPE_PREFIX).
func grubObjects(t *testing.T, kernel []byte) (mods, cfgs, prefixes []string) {
	t.Helper()
	info := -1
	for i := bytes.Index(kernel, []byte("mimg")); i >= 0; {
		if i+12 <= len(kernel) && binary.LittleEndian.Uint32(kernel[i+4:]) == 12 && i+int(binary.LittleEndian.Uint32(kernel[i+8:])) == len(kernel) {
			info = i
			break
		}
		j := bytes.Index(kernel[i+1:], []byte("mimg"))
		if j < 0 {
			break
		}
		i += 1 + j
	}
	if info < 0 {
		t.Fatal("no module area at the end of core.img")
	}
	for p := info + 12; p < len(kernel); {
		if p+8 > len(kernel) {
			t.Fatalf("object header at %#x past the end", p)
		}
		typ, size := binary.LittleEndian.Uint32(kernel[p:]), int(binary.LittleEndian.Uint32(kernel[p+4:]))
		if size < 8 || p+size > len(kernel) {
			t.Fatalf("object at %#x: size %d", p, size)
		}
		data := kernel[p+8 : p+size]
		switch typ {
		case 0: // OBJ_TYPE_ELF
			f, err := elf.NewFile(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("module at %#x: %v", p, err)
			}
			sec := f.Section(".modname")
			if sec == nil {
				t.Fatalf("module at %#x has no .modname", p)
			}
			name, err := sec.Data()
			if err != nil {
				t.Fatal(err)
			}
			mods = append(mods, strings.TrimRight(string(name), "\x00"))
		case 2: // OBJ_TYPE_CONFIG
			cfgs = append(cfgs, strings.TrimRight(string(data), "\x00"))
		case 3: // OBJ_TYPE_PREFIX
			prefixes = append(prefixes, strings.TrimRight(string(data), "\x00"))
		}
		p += size
	}
	return mods, cfgs, prefixes
}

// TestPrepareGrubEFIReal: an image without systemd-boot but with GRUB for
// x86-64 UEFI gets the image's GRUB as EFI/BOOT/BOOTX64.EFI, an x86-64 EFI
// application, and the grub.cfg it reads; equal inputs give equal bytes.
func TestPrepareGrubEFIReal(t *testing.T) {
	needAMD64(t)
	const hostGrubEFI = "/usr/lib/grub/x86_64-efi"
	for _, p := range []string{hostGrubEFI + "/kernel.img", hostGrubMkimage} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("no GRUB for UEFI on this host (%v): apt-get install grub-efi-amd64-bin grub-common", err)
		}
	}
	build := func(uuid string) *Result {
		tr := tree.New(testEpoch)
		addHostProgram(t, tr, hostGrubMkimage)
		ents, err := os.ReadDir(hostGrubEFI)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Type().IsRegular() || e.Type()&os.ModeSymlink != 0 {
				addHostFile(t, tr, filepath.Join(hostGrubEFI, e.Name()))
			}
		}
		addFiles(t, tr,
			tree.File{Path: "/boot/vmlinuz-" + grubTestKernel, Content: []byte("kernel")},
			tree.File{Path: "/boot/initrd.img-" + grubTestKernel, Content: []byte("initrd")},
		)
		res, err := Prepare(context.Background(), tr, Options{Methods: []string{UEFI}, RootFSUUID: uuid, Cmdline: grubTestCmdline, WorkDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := build(rootUUID)
	if !slices.Equal(res.Loaders, []string{"uefi: grub x86_64-efi"}) || res.BIOS != nil {
		t.Errorf("loaders %q, BIOS %v", res.Loaders, res.BIOS != nil)
	}
	if len(res.ESPFiles) != 1 || res.ESPFiles[0].Path != "EFI/BOOT/BOOTX64.EFI" {
		t.Fatalf("ESP files %+v", res.ESPFiles)
	}
	img := res.ESPFiles[0].Data
	f, err := pe.NewFile(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("BOOTX64.EFI is not a PE file: %v", err)
	}
	oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	if f.Machine != pe.IMAGE_FILE_MACHINE_AMD64 || !ok || oh.Subsystem != pe.IMAGE_SUBSYSTEM_EFI_APPLICATION {
		t.Errorf("BOOTX64.EFI: machine %#x, subsystem %v; want an x86-64 EFI application", f.Machine, oh)
	}
	// The early configuration is stored as it is in an EFI image.
	if !bytes.Contains(img, earlyConfig(rootUUID)) {
		t.Error("BOOTX64.EFI lacks the early configuration with the root UUID")
	}
	if len(res.TreeFiles) != 1 || res.TreeFiles[0].Path != "/"+GrubCfg ||
		!bytes.Contains(res.TreeFiles[0].Content, []byte("search --no-floppy --fs-uuid --set=root "+rootUUID)) {
		t.Errorf("tree files %+v", res.TreeFiles)
	}
	if again := build(rootUUID); !bytes.Equal(again.ESPFiles[0].Data, img) {
		t.Error("two GRUB EFI images of the same inputs differ")
	}
}
