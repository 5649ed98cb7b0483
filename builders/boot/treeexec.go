package boot

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/labbake/labbake/builders/tree"
)

// libDirs are where the image's dynamic loader looks for libraries, in its
// order (Debian's multiarch directories first).
var libDirs = []string{
	"lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu",
	"lib64", "usr/lib64", "lib", "usr/lib",
}

// treeProgram is a program of the image copied out with its dynamic loader
// and libraries, ready to run on the host: boot loader images are made by
// the image's own tools (grub-mkimage), so their format always matches the
// modules next to them and the host needs no boot loader package.
//
// The image's code is not trusted with the host: output starts it in a
// sandbox — new mount, network, PID, IPC and UTS namespaces, chrooted into
// root (which holds only the copies and the caller's inputs), as nobody
// when labbake runs as root, else in a user namespace as the invoking user
// — and falls back to running it plainly, with a warning, only where the
// kernel allows no namespaces.
type treeProgram struct {
	root   string // the host directory the program sees as /
	loader string // the image's ELF interpreter, copied; "" for a static program
	libs   string // directory of the copied libraries
	prog   string // the program, copied
}

// copyProgram copies the image's program p (a tree path), its ELF
// interpreter and, transitively, the libraries it needs into dir, the
// program's root. Only an x86-64 program on an x86-64 host can run;
// anything else is an error naming the program.
func copyProgram(t *tree.Tree, p, dir string) (*treeProgram, error) {
	e, err := follow(t, p)
	if err != nil {
		return nil, err
	}
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("/%s: running the image's tools needs an x86-64 host, this one is %s", p, runtime.GOARCH)
	}
	interp, needed, err := elfDeps(e.Content.Path)
	if err != nil {
		return nil, fmt.Errorf("/%s: %w", p, err)
	}
	libs := filepath.Join(dir, "lib")
	if err := os.MkdirAll(libs, 0o755); err != nil {
		return nil, err
	}
	for _, d := range []string{dir, libs} {
		if err := os.Chmod(d, 0o755); err != nil { // whatever the umask: the sandbox's user reads it
			return nil, err
		}
	}
	tp := &treeProgram{root: dir, libs: libs, prog: filepath.Join(dir, path.Base(p))}
	if err := copyExec(e.Content.Path, tp.prog); err != nil {
		return nil, err
	}
	if interp != "" {
		ie, err := follow(t, interp)
		if err != nil {
			return nil, fmt.Errorf("/%s: its ELF interpreter: %w", p, err)
		}
		tp.loader = filepath.Join(dir, "ld.so")
		if err := copyExec(ie.Content.Path, tp.loader); err != nil {
			return nil, err
		}
	}
	seen := map[string]bool{}
	for len(needed) > 0 {
		name := needed[0]
		needed = needed[1:]
		if seen[name] || strings.Contains(name, "/") {
			continue
		}
		seen[name] = true
		blob, err := findLib(t, name)
		if err != nil {
			return nil, fmt.Errorf("/%s: %w", p, err)
		}
		_, more, err := elfDeps(blob)
		if err != nil {
			return nil, fmt.Errorf("/%s: library %s: %w", p, name, err)
		}
		needed = append(needed, more...)
		if err := copyExec(blob, filepath.Join(libs, name)); err != nil {
			return nil, err
		}
	}
	return tp, nil
}

// command runs the copied program with the image's loader and only the
// copied libraries (the host's ld.so.cache is not read), in the C locale,
// without a sandbox.
func (tp *treeProgram) command(ctx context.Context, args ...string) *exec.Cmd {
	return tp.cmd(ctx, func(p string) string { return p }, args)
}

// sandboxed is command inside the sandbox: paths are as the program sees
// them from root. An unprivileged caller gets a user namespace whose root
// is the caller; root drops to nobody after the chroot instead (root in a
// user namespace could leave a chroot).
func (tp *treeProgram) sandboxed(ctx context.Context, args ...string) *exec.Cmd {
	cmd := tp.cmd(ctx, tp.inside, args)
	flags := uintptr(syscall.CLONE_NEWNS | syscall.CLONE_NEWNET | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS)
	attr := &syscall.SysProcAttr{Cloneflags: flags, Chroot: tp.root, Pdeathsig: syscall.SIGKILL}
	if uid := os.Getuid(); uid == 0 {
		attr.Credential = &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}
	} else {
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
	}
	cmd.SysProcAttr = attr
	cmd.Dir = "/"
	return cmd
}

// nobody is the host user a sandboxed program runs as when labbake runs as
// root.
const nobody = 65534

func (tp *treeProgram) cmd(ctx context.Context, at func(string) string, args []string) *exec.Cmd {
	var cmd *exec.Cmd
	if tp.loader == "" {
		cmd = exec.CommandContext(ctx, at(tp.prog), args...)
	} else {
		cmd = exec.CommandContext(ctx, at(tp.loader), append([]string{"--inhibit-cache", "--library-path", at(tp.libs), at(tp.prog)}, args...)...)
	}
	cmd.Env = []string{"LC_ALL=C", "PATH=/usr/bin:/bin"}
	return cmd
}

// inside is the path a sandboxed program sees for a host path under root.
func (tp *treeProgram) inside(hostPath string) string {
	rel, err := filepath.Rel(tp.root, hostPath)
	switch {
	case err != nil || rel == ".." || strings.HasPrefix(rel, "../"):
		return hostPath // not visible inside; the program will say so
	case rel == ".":
		return "/"
	}
	return "/" + filepath.ToSlash(rel)
}

// output runs the program in the sandbox and returns its standard output;
// args gets the function that turns host paths under root into the
// program's. Standard output is a file (some tools fsync it), next to
// root, not in it. A failure is an error holding what the program printed
// on standard error.
func (tp *treeProgram) output(ctx context.Context, log *slog.Logger, name string, args func(at func(string) string) []string) ([]byte, error) {
	out, err := os.CreateTemp(filepath.Dir(tp.root), ".stdout-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	var stderr bytes.Buffer
	runOnce := func(cmd *exec.Cmd) error {
		if err := out.Truncate(0); err != nil {
			return err
		}
		if _, err := out.Seek(0, io.SeekStart); err != nil {
			return err
		}
		stderr.Reset()
		cmd.Stdout, cmd.Stderr = out, &stderr
		return cmd.Run()
	}
	err = runOnce(tp.sandboxed(ctx, args(tp.inside)...))
	if err != nil && noSandbox(err) {
		log.Warn("running the image's "+name+" without a sandbox: no namespaces allowed here", "err", err)
		err = runOnce(tp.command(ctx, args(func(p string) string { return p })...))
	}
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("running the image's %s: %w: %s", name, err, msg)
		}
		return nil, fmt.Errorf("running the image's %s: %w", name, err)
	}
	return os.ReadFile(out.Name())
}

// noSandbox tells a failure to create the sandbox's namespaces (user
// namespaces disabled, or none left) from the program failing.
func noSandbox(err error) bool {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return false
	}
	for _, e := range []error{syscall.EPERM, syscall.EINVAL, syscall.ENOSPC, syscall.EUSERS, syscall.ENOSYS} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// findLib finds a library by its soname in the image's library dirs.
func findLib(t *tree.Tree, name string) (string, error) {
	for _, d := range libDirs {
		e, err := follow(t, d+"/"+name)
		if err == nil {
			return e.Content.Path, nil
		}
	}
	return "", fmt.Errorf("library %s not in the image (looked in /%s)", name, strings.Join(libDirs, ", /"))
}

// elfDeps reads an x86-64 ELF file's interpreter (PT_INTERP, "" when
// static) and its DT_NEEDED libraries.
func elfDeps(p string) (interp string, needed []string, err error) {
	f, err := elf.Open(p)
	if err != nil {
		return "", nil, fmt.Errorf("not an ELF file: %w", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return "", nil, fmt.Errorf("an ELF file for %s, not x86-64", f.Machine)
	}
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(prog.Open(), 4096))
		if err != nil {
			return "", nil, fmt.Errorf("reading its interpreter: %w", err)
		}
		interp = strings.TrimRight(string(b), "\x00")
	}
	needed, err = f.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return "", nil, fmt.Errorf("reading its libraries: %w", err)
	}
	return interp, needed, nil
}

// copyExec copies a file and makes it executable: the image's blobs are
// read-only and may sit on a noexec file system.
func copyExec(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if err := out.Chmod(0o755); err != nil {
		out.Close()
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
