package disk

import (
	"context"
	"encoding/binary"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labbake/labbake/builders/tree"
)

// TestHostXattrsRemoved: xattrs the host puts on staged files — here a
// POSIX ACL inherited from a default ACL on the work dir, on SELinux hosts
// the security.selinux label — do not reach the image; the tree's own
// xattrs do.
func TestHostXattrsRemoved(t *testing.T) {
	debugfs, err := findTool("debugfs")
	if err != nil {
		t.Skip(err)
	}
	if _, err := findTool("mke2fs"); err != nil {
		t.Skip(err)
	}
	work := t.TempDir()
	// A default ACL: owner rwx, user 1234 r-x, group r-x, mask r-x, other r-x.
	acl := []byte{2, 0, 0, 0}
	for _, e := range []struct {
		tag, perm uint16
		id        uint32
	}{{0x01, 7, 0xFFFFFFFF}, {0x02, 5, 1234}, {0x04, 5, 0xFFFFFFFF}, {0x10, 5, 0xFFFFFFFF}, {0x20, 5, 0xFFFFFFFF}} {
		acl = binary.LittleEndian.AppendUint16(acl, e.tag)
		acl = binary.LittleEndian.AppendUint16(acl, e.perm)
		acl = binary.LittleEndian.AppendUint32(acl, e.id)
	}
	if err := unix.Setxattr(work, "system.posix_acl_default", acl, 0); err != nil {
		t.Skipf("no default ACLs here: %v", err)
	}

	tr := tree.New(time.Unix(1700000000, 0))
	if err := tr.AddFiles([]tree.File{
		{Path: "/etc/plain", Content: []byte("plain\n")},
		{Path: "/etc/labelled", Content: []byte("labelled\n")},
		{Path: "/etc/link", Symlink: "plain"},
	}, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	e, _ := tr.Get("etc/labelled")
	e.Xattrs = map[string][]byte{"user.keep": []byte("1")}
	if err := tr.Add(e); err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(t.TempDir(), "disk.raw")
	ids := IDs{DiskGUID: "5B3C8A0E-1D8F-4C6B-9E2A-0F1E2D3C4B5A", BIOSGUID: "6B3C8A0E-1D8F-4C6B-9E2A-0F1E2D3C4B5A",
		ESPGUID: "7B3C8A0E-1D8F-4C6B-9E2A-0F1E2D3C4B5A", RootGUID: "8B3C8A0E-1D8F-4C6B-9E2A-0F1E2D3C4B5A",
		RootFSUUID: "f4b4fdbc-2eb4-8b1a-8c29-ffc08365d3c3", ESPVolumeID: 1}
	r, err := Build(context.Background(), tr, raw, Options{Size: MinSize, IDs: ids, Epoch: time.Unix(1700000000, 0), WorkDir: work})
	if err != nil {
		t.Fatal(err)
	}
	// The staged directory did inherit the ACLs: the test tests something.
	// (Files are hard links to their blobs where possible, which inherit
	// nothing.)
	for _, name := range []string{"system.posix_acl_access", "system.posix_acl_default"} {
		if _, err := unix.Getxattr(filepath.Join(work, "stage", "etc"), name, nil); err != nil {
			t.Fatalf("the staged /etc did not inherit %s (%v): nothing to remove", name, err)
		}
	}
	dev := fmt.Sprintf("%s?offset=%d", raw, r.Layout.Root.Offset)
	for p, want := range map[string]string{"/etc": "", "/etc/plain": "", "/etc/link": "", "/etc/labelled": "user.keep"} {
		out, err := exec.Command(debugfs, "-R", "ea_list "+p, dev).CombinedOutput()
		if err != nil {
			t.Fatalf("debugfs ea_list %s: %v\n%s", p, err, out)
		}
		if strings.Contains(string(out), "posix_acl") {
			t.Errorf("%s carries the host's ACL into the image:\n%s", p, out)
		}
		if want != "" && !strings.Contains(string(out), want) {
			t.Errorf("%s lost its %s:\n%s", p, want, out)
		}
	}
}
