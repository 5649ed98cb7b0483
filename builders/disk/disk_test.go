package disk

import (
	"strings"
	"testing"
)

func TestNewLayout(t *testing.T) {
	ids := IDs{DiskGUID: "d", BIOSGUID: "b", ESPGUID: "e", RootGUID: "r"}
	for _, tc := range []struct {
		name    string
		size    int64
		wantErr string
		rootOff int64
		rootLen int64
	}{
		{"8GiB", 8 << 30, "", 202 * MiB, 8<<30 - 203*MiB},
		{"minimum", MinSize, "", 202 * MiB, 32 * MiB},
		{"too small", MinSize - MiB, "below the minimum", 0, 0},
		{"unaligned", 8<<30 + 512, "multiple of 1 MiB", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := NewLayout(tc.size, ids)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.Root.Offset != tc.rootOff || l.Root.Size != tc.rootLen {
				t.Errorf("root at %d+%d, want %d+%d", l.Root.Offset, l.Root.Size, tc.rootOff, tc.rootLen)
			}
			parts := []Partition{l.BIOS, l.ESP, l.Root}
			for i, p := range parts {
				if p.Offset%MiB != 0 || p.Size%MiB != 0 {
					t.Errorf("%s not aligned to 1 MiB: %d+%d", p.Name, p.Offset, p.Size)
				}
				if i > 0 && parts[i-1].Offset+parts[i-1].Size > p.Offset {
					t.Errorf("%s overlaps %s", p.Name, parts[i-1].Name)
				}
			}
			if end := l.Root.Offset + l.Root.Size; end > tc.size-33*512 {
				t.Errorf("root ends at %d, into the backup GPT", end)
			}
		})
	}
}

func TestFstab(t *testing.T) {
	got := string(Fstab("1234", []string{"discard", "noatime"}))
	want := "UUID=1234\t/\text4\tdiscard,noatime,errors=remount-ro\t0\t1\n"
	if !strings.HasSuffix(got, want) {
		t.Errorf("fstab:\n%s\nwant a line %q", got, want)
	}
}

func TestQuote(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"/etc/motd", `"/etc/motd"`, ""},
		{"a b", `"a b"`, ""},
		{`say "hi"`, `"say ""hi"""`, ""},
		{"new\nline", "", "newline"},
	} {
		got, err := quote(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("quote(%q) err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("quote(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestDebugfsErrors(t *testing.T) {
	ok := "debugfs 1.47.0 (5-Feb-2023)\ndebugfs: cd \"/\"\ndebugfs: mknod \"null\" c 1 3\nAllocated inode: 16\n"
	if msg := debugfsErrors([]byte(ok)); msg != "" {
		t.Errorf("clean output reported %q", msg)
	}
	bad := ok + "sif: File not found by ext2_lookup while looking up \"x\"\n"
	if msg := debugfsErrors([]byte(bad)); !strings.Contains(msg, "File not found") {
		t.Errorf("error not found in output, got %q", msg)
	}
}
