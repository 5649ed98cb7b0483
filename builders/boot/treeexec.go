package boot

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"

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
type treeProgram struct {
	loader string // the image's ELF interpreter, copied; "" for a static program
	libs   string // directory of the copied libraries
	prog   string // the program, copied
}

// copyProgram copies the image's program p (a tree path), its ELF
// interpreter and, transitively, the libraries it needs into dir. Only an
// x86-64 program on an x86-64 host can run; anything else is an error
// naming the program.
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
	tp := &treeProgram{libs: libs, prog: filepath.Join(dir, path.Base(p))}
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
// copied libraries (the host's ld.so.cache is not read), in the C locale.
func (tp *treeProgram) command(ctx context.Context, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if tp.loader == "" {
		cmd = exec.CommandContext(ctx, tp.prog, args...)
	} else {
		cmd = exec.CommandContext(ctx, tp.loader, append([]string{"--inhibit-cache", "--library-path", tp.libs, tp.prog}, args...)...)
	}
	cmd.Env = []string{"LC_ALL=C", "PATH=/usr/bin:/bin"}
	return cmd
}

// run runs the program and returns an error holding its output when it
// fails.
func (tp *treeProgram) run(ctx context.Context, name string, args ...string) error {
	cmd := tp.command(ctx, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if msg == "" {
			return fmt.Errorf("running the image's %s: %w", name, err)
		}
		return fmt.Errorf("running the image's %s: %w: %s", name, err, msg)
	}
	return nil
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
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
