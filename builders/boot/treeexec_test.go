package boot

import (
	"context"
	"debug/elf"
	"encoding/binary"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/iox"
)

// hostLibDirs are where the host's dynamic loader finds libraries
// (Debian's multiarch directories; merged-/usr makes some of them the
// same).
var hostLibDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64"}

// addHostFile adds the host file p (absolute) to tr at the same path, laid
// out as on the host: every symlink met on the way, in a parent directory
// (lib64 -> usr/lib64 on a merged-/usr host) or the file itself, becomes a
// symlink entry, and the regular file at the end an entry whose blob is the
// host file (not copied).
func addHostFile(t *testing.T, tr *tree.Tree, p string) {
	t.Helper()
	for range 40 {
		next, more := addHostPath(t, tr, p)
		if !more {
			return
		}
		p = next
	}
	t.Fatalf("%s: too many symlinks", p)
}

// addHostPath adds the first symlink on the way to p, or p when it is a
// regular file; after a symlink it returns the path to go on with.
func addHostPath(t *testing.T, tr *tree.Tree, p string) (string, bool) {
	t.Helper()
	parts := strings.Split(strings.TrimPrefix(path.Clean(p), "/"), "/")
	for i := range parts {
		hp := "/" + path.Join(parts[:i+1]...)
		fi, err := os.Lstat(hp)
		if err != nil {
			t.Fatal(err)
		}
		last := i == len(parts)-1
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(hp)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := tr.Get(hp); !ok {
				if err := tr.Add(tree.Entry{Path: hp, Type: tree.Symlink, Mode: 0o777, Linkname: target}); err != nil {
					t.Fatal(err)
				}
			}
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(hp), target)
			}
			return path.Join(append([]string{target}, parts[i+1:]...)...), true
		case fi.IsDir() && !last:
		case fi.Mode().IsRegular() && last:
			if err := tr.Add(tree.Entry{Path: hp, Type: tree.Regular, Mode: iox.PermBits(fi.Mode()), Content: &tree.Blob{Path: hp, Size: fi.Size()}}); err != nil {
				t.Fatal(err)
			}
			return "", false
		default:
			t.Fatalf("%s: a %s", hp, fi.Mode().Type())
		}
	}
	panic("unreachable")
}

// hostDeps returns the ELF interpreter of the host program prog and the
// host paths of the libraries it needs, transitively, by soname.
func hostDeps(t *testing.T, prog string) (interp string, libs map[string]string) {
	t.Helper()
	libs = map[string]string{}
	var walk func(p string, top bool)
	walk = func(p string, top bool) {
		f, err := elf.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if top {
			for _, ph := range f.Progs {
				if ph.Type == elf.PT_INTERP {
					b := make([]byte, ph.Filesz)
					if _, err := ph.ReadAt(b, 0); err != nil {
						t.Fatal(err)
					}
					interp = strings.TrimRight(string(b), "\x00")
				}
			}
		}
		needed, err := f.ImportedLibraries()
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range needed {
			if _, ok := libs[name]; ok {
				continue
			}
			found := ""
			for _, d := range hostLibDirs {
				if _, err := os.Stat(filepath.Join(d, name)); err == nil {
					found = filepath.Join(d, name)
					break
				}
			}
			if found == "" {
				t.Fatalf("%s needs %s: not found on the host", p, name)
			}
			libs[name] = found
			walk(found, false)
		}
	}
	walk(prog, true)
	return interp, libs
}

// addHostProgram adds the host program prog with its interpreter and
// libraries to tr, except the libraries named in without. It returns the
// sonames of the libraries.
func addHostProgram(t *testing.T, tr *tree.Tree, prog string, without ...string) []string {
	t.Helper()
	interp, libs := hostDeps(t, prog)
	addHostFile(t, tr, prog)
	if interp != "" {
		addHostFile(t, tr, interp)
	}
	var names []string
	for name, p := range libs {
		names = append(names, name)
		if !slices.Contains(without, name) {
			addHostFile(t, tr, p)
		}
	}
	slices.Sort(names)
	return names
}

func needAMD64(t *testing.T) {
	t.Helper()
	if runtime.GOARCH != "amd64" || runtime.GOOS != "linux" {
		t.Skipf("running an image's programs needs linux/amd64, this is %s/%s", runtime.GOOS, runtime.GOARCH)
	}
}

// hostProgram returns the path of the first of progs the host has as a
// dynamically linked x86-64 ELF program, or skips.
func hostProgram(t *testing.T, progs ...string) string {
	t.Helper()
	for _, p := range progs {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		dynamic := slices.ContainsFunc(f.Progs, func(ph *elf.Prog) bool { return ph.Type == elf.PT_INTERP })
		f.Close()
		if dynamic && f.Machine == elf.EM_X86_64 {
			return p
		}
	}
	t.Skipf("none of %s is a dynamically linked x86-64 program on this host", strings.Join(progs, ", "))
	return ""
}

// TestCopyProgram copies dynamically linked host programs out of a tree
// laid out like the host (a merged-/usr Debian) and runs them with the
// tree's loader and libraries only.
func TestCopyProgram(t *testing.T) {
	needAMD64(t)
	echo := hostProgram(t, "/usr/bin/echo", "/bin/echo")
	env := hostProgram(t, "/usr/bin/env", "/bin/env")
	tr := tree.New(testEpoch)
	libs := addHostProgram(t, tr, echo)
	addHostProgram(t, tr, env)
	if !slices.Contains(libs, "libc.so.6") {
		t.Fatalf("%s needs %v, not libc.so.6: the checks below expect glibc", echo, libs)
	}
	ctx := context.Background()

	tp, err := copyProgram(tr, strings.TrimPrefix(echo, "/"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if tp.loader == "" {
		t.Fatal("no loader copied for a dynamically linked program")
	}
	for _, name := range libs {
		if _, err := os.Stat(filepath.Join(tp.libs, name)); err != nil {
			t.Errorf("library %s not copied: %v", name, err)
		}
	}
	out, err := tp.command(ctx, "hello", "wörld").Output()
	if err != nil {
		t.Fatalf("running the copied echo: %v", err)
	}
	if string(out) != "hello wörld\n" {
		t.Errorf("echo printed %q", out)
	}

	// The copied loader takes the copied libraries, never the host's
	// ld.so.cache (LD_DEBUG=libs tells where each library comes from).
	cmd := tp.command(ctx, "x")
	if !slices.Contains(cmd.Args, "--inhibit-cache") {
		t.Errorf("command %q does not inhibit the host's ld.so.cache", cmd.Args)
	}
	cmd.Env = append(cmd.Env, "LD_DEBUG=libs")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %s", err, stderr.String())
	}
	if dbg := stderr.String(); strings.Contains(dbg, "ld.so.cache") || !strings.Contains(dbg, "calling init: "+filepath.Join(tp.libs, "libc.so.6")) {
		t.Errorf("libraries not (only) from %s:\n%s", tp.libs, dbg)
	}

	// The environment is the C locale and a plain PATH, nothing of the
	// host's.
	t.Setenv("LABBAKE_TEST_LEAK", "1")
	tpEnv, err := copyProgram(tr, strings.TrimPrefix(env, "/"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, err = tpEnv.command(ctx).Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "LC_ALL=C\nPATH=/usr/bin:/bin\n" {
		t.Errorf("environment %q", out)
	}
	// output returns what the program printed on stderr in its error.
	args := func(a ...string) func(func(string) string) []string {
		return func(func(string) string) []string { return a }
	}
	_, err = tpEnv.output(ctx, slog.New(slog.DiscardHandler), "env", args("/nonexistent/labbake-test"))
	if err == nil || !strings.Contains(err.Error(), "running the image's env") || !strings.Contains(err.Error(), "/nonexistent/labbake-test") {
		t.Errorf("failing run: %v", err)
	}
	if out, err := tpEnv.output(ctx, slog.New(slog.DiscardHandler), "env", args("--version")); err != nil || !strings.Contains(string(out), "env") {
		t.Errorf("env --version: %q, %v", out, err)
	}
}

// TestSandbox: a program of the image run by output sees only its own
// root (the copies and the caller's inputs), as the invoking user, or
// nobody when that is root.
func TestSandbox(t *testing.T) {
	needAMD64(t)
	stat := hostProgram(t, "/usr/bin/stat", "/bin/stat")
	cat := hostProgram(t, "/usr/bin/cat", "/bin/cat")
	tr := tree.New(testEpoch)
	addHostProgram(t, tr, stat)
	addHostProgram(t, tr, cat)
	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	tpStat, err := copyProgram(tr, strings.TrimPrefix(stat, "/"), root)
	if err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(root, "cat")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	tpCat, err := copyProgram(tr, strings.TrimPrefix(cat, "/"), sub)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	probe := tpStat.sandboxed(ctx, "-c", "%u", "/")
	if out, err := probe.CombinedOutput(); err != nil {
		if noSandbox(err) {
			t.Skipf("no user namespaces here: %v", err)
		}
		t.Fatalf("sandboxed stat: %v\n%s", err, out)
	}

	// Inside, / is root: the owner of root as the sandbox maps it.
	out, err := tpStat.output(ctx, log, "stat", func(at func(string) string) []string { return []string{"-c", "%u:%g %n", at(root)} })
	if err != nil || string(out) != "0:0 /\n" {
		t.Errorf("stat of the sandbox's root: %q, %v; want it owned by root", out, err)
	}

	// A host file outside the root is not there; inside the root it is.
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := tpCat.output(ctx, log, "cat", func(at func(string) string) []string { return []string{at(secret)} }); err == nil {
		t.Error("the sandboxed program read a host file outside its root")
	}
	inside := filepath.Join(sub, "input")
	if err := writeReadable(inside, []byte("mine")); err != nil {
		t.Fatal(err)
	}
	if out, err := tpCat.output(ctx, log, "cat", func(at func(string) string) []string { return []string{at(inside)} }); err != nil || string(out) != "mine" {
		t.Errorf("reading its input: %q, %v", out, err)
	}
	// Run by root, the program is nobody: a root-only file in its own
	// root is out of reach.
	if os.Getuid() == 0 {
		private := filepath.Join(sub, "private")
		if err := os.WriteFile(private, []byte("root's"), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := tpCat.output(ctx, log, "cat", func(at func(string) string) []string { return []string{at(private)} }); err == nil {
			t.Errorf("the sandboxed program read a root-only file: %q", out)
		}
	}
	// Outside the sandbox the same program reads the host file.
	if out, err := tpCat.command(ctx, secret).Output(); err != nil || string(out) != "host" {
		t.Errorf("plain run: %q, %v", out, err)
	}
}

// TestCopyProgramThroughSymlinks: the program named by a path through the
// tree's /bin symlink, copied under its base name.
func TestCopyProgramThroughSymlinks(t *testing.T) {
	needAMD64(t)
	echo := hostProgram(t, "/usr/bin/echo", "/bin/echo")
	tr := tree.New(testEpoch)
	addHostProgram(t, tr, echo)
	if err := tr.AddFiles([]tree.File{{Path: "/sbin/say", Symlink: echo}}, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	tp, err := copyProgram(tr, "sbin/say", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(tp.prog) != "say" {
		t.Errorf("program copied as %s", tp.prog)
	}
	if fi, err := os.Lstat(tp.prog); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o100 == 0 {
		t.Errorf("copied program %s: %v, %v", tp.prog, fi, err)
	}
	out, err := tp.command(context.Background(), "hi").Output()
	if err != nil || string(out) != "hi\n" {
		t.Errorf("say hi: %q, %v", out, err)
	}
}

// TestCopyProgramStatic: a static program (the test binary, built with
// CGO_ENABLED=0) needs no loader and runs as it is.
func TestCopyProgramStatic(t *testing.T) {
	needAMD64(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	interp, libs := hostDeps(t, self)
	if interp != "" || len(libs) != 0 {
		t.Skip("the test binary is dynamically linked (built with cgo)")
	}
	tr := tree.New(testEpoch)
	fi, err := os.Stat(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Add(tree.Entry{Path: "usr/bin/boot.test", Type: tree.Regular, Mode: 0o755, Content: &tree.Blob{Path: self, Size: fi.Size()}}); err != nil {
		t.Fatal(err)
	}
	tp, err := copyProgram(tr, "usr/bin/boot.test", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if tp.loader != "" {
		t.Errorf("loader %q for a static program", tp.loader)
	}
	cmd := tp.command(context.Background(), "-test.list=^TestCopyProgramStatic$")
	if cmd.Path != tp.prog {
		t.Errorf("static program run as %q", cmd.Args)
	}
	out, err := cmd.Output()
	if err != nil || string(out) != "TestCopyProgramStatic\n" {
		t.Errorf("output %q, %v", out, err)
	}
}

func TestCopyProgramErrors(t *testing.T) {
	needAMD64(t)
	echo := hostProgram(t, "/usr/bin/echo", "/bin/echo")
	interp, _ := hostDeps(t, echo)
	elfBytes, err := os.ReadFile(echo)
	if err != nil {
		t.Fatal(err)
	}
	// The same program for 64-bit ARM: only the ELF header's e_machine
	// differs.
	arm := slices.Clone(elfBytes)
	binary.LittleEndian.PutUint16(arm[18:], uint16(elf.EM_AARCH64))

	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, tr *tree.Tree)
		prog  string
		want  []string // in the error
	}{
		{
			name:  "program missing",
			setup: func(t *testing.T, tr *tree.Tree) { addHostProgram(t, tr, echo) },
			prog:  "usr/bin/grub-mkimage",
			want:  []string{"/usr/bin/grub-mkimage", "not found"},
		},
		{
			name:  "library missing",
			setup: func(t *testing.T, tr *tree.Tree) { addHostProgram(t, tr, echo, "libc.so.6") },
			prog:  strings.TrimPrefix(echo, "/"),
			want:  []string{echo, "library libc.so.6 not in the image", "/usr/lib/x86_64-linux-gnu"},
		},
		{
			name: "library not an ELF file",
			setup: func(t *testing.T, tr *tree.Tree) {
				addHostProgram(t, tr, echo, "libc.so.6")
				addFiles(t, tr, tree.File{Path: "/usr/lib/x86_64-linux-gnu/libc.so.6", Content: []byte("GROUP ( libc.so.6 )\n")})
			},
			prog: strings.TrimPrefix(echo, "/"),
			want: []string{echo, "library libc.so.6", "not an ELF file"},
		},
		{
			name: "interpreter missing",
			setup: func(t *testing.T, tr *tree.Tree) {
				addHostProgram(t, tr, echo)
				tr.Remove(interp)
			},
			prog: strings.TrimPrefix(echo, "/"),
			want: []string{echo, "its ELF interpreter", "not found"},
		},
		{
			name: "dangling symlink",
			setup: func(t *testing.T, tr *tree.Tree) {
				addFiles(t, tr, tree.File{Path: "/usr/bin/grub-mkimage", Symlink: "grub2-mkimage"})
			},
			prog: "usr/bin/grub-mkimage",
			want: []string{"/usr/bin/grub2-mkimage", "not found"},
		},
		{
			name: "not an ELF file",
			setup: func(t *testing.T, tr *tree.Tree) {
				addFiles(t, tr, tree.File{Path: "/usr/bin/grub-mkimage", Content: []byte("#!/bin/sh\nexit 0\n"), Mode: 0o755})
			},
			prog: "usr/bin/grub-mkimage",
			want: []string{"/usr/bin/grub-mkimage", "not an ELF file"},
		},
		{
			name: "ELF for another machine",
			setup: func(t *testing.T, tr *tree.Tree) {
				addFiles(t, tr, tree.File{Path: "/usr/bin/grub-mkimage", Content: arm, Mode: 0o755})
			},
			prog: "usr/bin/grub-mkimage",
			want: []string{"/usr/bin/grub-mkimage", "EM_AARCH64", "not x86-64"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := tree.New(testEpoch)
			tc.setup(t, tr)
			tp, err := copyProgram(tr, tc.prog, t.TempDir())
			if err == nil {
				t.Fatalf("no error, got %+v", tp)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// addFiles adds inline files to tr.
func addFiles(t *testing.T, tr *tree.Tree, files ...tree.File) {
	t.Helper()
	if err := tr.AddFiles(files, t.TempDir()); err != nil {
		t.Fatal(err)
	}
}
