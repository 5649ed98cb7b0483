package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// inode is one path of a baked root filesystem, read back with debugfs.
type inode struct {
	Path   string
	Ino    int
	Mode   uint32 // type bits included, as in st_mode
	UID    int
	GID    int
	Size   int64
	Links  int
	Mtime  int64
	Target string            // symlink target
	Xattrs map[string]string // name -> hex bytes as debugfs prints them
	Major  int
	Minor  int
}

// readImage lists every inode of the ext4 filesystem at offset in raw with
// debugfs: no mounting, no root.
func readImage(t *testing.T, raw string, offset int64) map[string]*inode {
	t.Helper()
	dev := fmt.Sprintf("%s?offset=%d", raw, offset)
	out := map[string]*inode{}
	// Breadth-first over directories with `ls -p`, one debugfs call per level.
	level := []string{"/"}
	for len(level) > 0 {
		var script strings.Builder
		for _, d := range level {
			fmt.Fprintf(&script, "ls -p %s\n", quote(d))
		}
		text := debugfs(t, dev, script.String())
		var next []string
		cur := ""
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, "debugfs: ls -p ") {
				cur = unquote(strings.TrimPrefix(line, "debugfs: ls -p "))
				continue
			}
			if !strings.HasPrefix(line, "/") {
				continue
			}
			// /ino/mode/uid/gid/name/size/
			f := strings.Split(line, "/")
			if len(f) < 7 {
				continue
			}
			name := strings.Join(f[5:len(f)-2], "/")
			if name == "." || name == ".." || name == "" || f[1] == "0" {
				continue
			}
			ino, _ := strconv.Atoi(f[1])
			mode, _ := strconv.ParseUint(f[2], 8, 32)
			uid, _ := strconv.Atoi(f[3])
			gid, _ := strconv.Atoi(f[4])
			size, _ := strconv.ParseInt(f[len(f)-2], 10, 64)
			p := strings.TrimPrefix(cur+"/"+name, "/")
			if cur == "/" {
				p = name
			}
			out[p] = &inode{Path: p, Ino: ino, Mode: uint32(mode), UID: uid, GID: gid, Size: size}
			if mode&0o170000 == 0o040000 {
				next = append(next, "/"+p)
			}
		}
		level = next
	}
	// One stat per inode for times, links, xattrs, link targets, devices.
	var script strings.Builder
	paths := make([]string, 0, len(out))
	for p := range out {
		paths = append(paths, p)
		fmt.Fprintf(&script, "stat %s\n", quote("/"+p))
	}
	text := debugfs(t, dev, script.String())
	var cur *inode
	inXattrs := false
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "debugfs: stat "):
			cur = out[strings.TrimPrefix(unquote(strings.TrimPrefix(line, "debugfs: stat ")), "/")]
			inXattrs = false
		case cur == nil:
		case strings.HasPrefix(line, "Links: "):
			fmt.Sscanf(line, "Links: %d", &cur.Links)
		case strings.HasPrefix(line, " mtime: 0x"):
			v, _ := strconv.ParseInt(line[10:18], 16, 64)
			cur.Mtime = v
		case strings.HasPrefix(line, "Fast link dest: "):
			cur.Target = unquote(strings.TrimPrefix(line, "Fast link dest: "))
		case strings.HasPrefix(line, "Device major/minor number: "):
			fmt.Sscanf(line, "Device major/minor number: %d:%d", &cur.Major, &cur.Minor)
		case strings.HasPrefix(line, "Extended attributes:"):
			inXattrs = true
		case inXattrs && strings.HasPrefix(line, "  "):
			// "  name (len) = hex bytes" or "  name = "text" (len)"
			name, val, _ := strings.Cut(strings.TrimSpace(line), " ")
			if cur.Xattrs == nil {
				cur.Xattrs = map[string]string{}
			}
			cur.Xattrs[name] = val
		default:
			inXattrs = false
		}
	}
	// Slow symlinks keep their target in a data block: dump it.
	dir := t.TempDir()
	var dump strings.Builder
	var slow []*inode
	for _, n := range out {
		if n.Mode&0o170000 == 0o120000 && n.Target == "" {
			slow = append(slow, n)
			fmt.Fprintf(&dump, "dump <%d> %s\n", n.Ino, filepath.Join(dir, strconv.Itoa(n.Ino)))
		}
	}
	if len(slow) > 0 {
		debugfs(t, dev, dump.String())
		for _, n := range slow {
			b, err := os.ReadFile(filepath.Join(dir, strconv.Itoa(n.Ino)))
			if err != nil {
				t.Fatalf("reading symlink %s: %v", n.Path, err)
			}
			n.Target = string(b)
		}
	}
	return out
}

// readFiles returns the content of the given regular files of the image.
func readFiles(t *testing.T, raw string, offset int64, paths []string) map[string][]byte {
	t.Helper()
	dev := fmt.Sprintf("%s?offset=%d", raw, offset)
	dir := t.TempDir()
	var script strings.Builder
	for i, p := range paths {
		fmt.Fprintf(&script, "dump %s %s\n", quote("/"+p), filepath.Join(dir, strconv.Itoa(i)))
	}
	debugfs(t, dev, script.String())
	out := map[string][]byte{}
	for i, p := range paths {
		b, err := os.ReadFile(filepath.Join(dir, strconv.Itoa(i)))
		if err != nil {
			t.Fatalf("dumping %s: %v", p, err)
		}
		out[p] = b
	}
	return out
}

func debugfs(t *testing.T, dev, script string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tool(t, "debugfs"), "-f", f, dev)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stdout
	if err := cmd.Run(); err != nil {
		t.Fatalf("debugfs: %v\n%s", err, stdout.String())
	}
	return stdout.String()
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func unquote(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return strings.ReplaceAll(s[1:len(s)-1], `""`, `"`)
	}
	return s
}

// tool finds a host tool, also in sbin; the test is skipped without it
// unless LABBAKE_REQUIRE_TOOLS is set (as in CI), where it fails instead.
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(d, name)); err == nil {
			return filepath.Join(d, name)
		}
	}
	if os.Getenv("LABBAKE_REQUIRE_TOOLS") != "" {
		t.Fatalf("%s not found (run make deps)", name)
	}
	t.Skipf("%s not found (run make deps)", name)
	return ""
}

// runTool runs a host tool and returns its combined output and error.
func runTool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(tool(t, name), args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// buildTags are the tags labbake is built with (see the Makefile): the OCI
// library's pure-Go signature code and no cgo storage drivers.
const buildTags = "containers_image_openpgp,containers_image_storage_stub"
