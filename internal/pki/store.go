package pki

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/labbake/labbake/internal/atomicfile"
	"github.com/labbake/labbake/internal/iox"
)

// Modes of what is kept in the PKI directory (and written into guests).
const (
	dirMode     fs.FileMode = 0o700
	privateMode fs.FileMode = 0o600
	publicMode  fs.FileMode = 0o644
)

// store is the PKI directory. Names given to it are slash-separated and
// relative to it.
type store struct{ dir string }

func (s store) path(name string) string { return filepath.Join(s.dir, filepath.FromSlash(name)) }

// read returns a file's bytes, or nil and no error when it does not exist.
// An empty file reads as an empty, non-nil slice.
func (s store) read(name string) ([]byte, error) {
	b, err := os.ReadFile(s.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

func (s store) exists(name string) (bool, error) {
	_, err := os.Lstat(s.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("pki: %w", err)
	}
	return true, nil
}

// write is one file to put in the PKI directory.
type write struct {
	name string
	data []byte
	mode fs.FileMode
}

// mkdir makes the directory name (and those between it and the PKI
// directory) with mode 0700, and gives that mode back to any of them that
// lost it.
func (s store) mkdir(name string) error {
	if err := os.MkdirAll(s.path(name), dirMode); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	for d := name; ; d = path.Dir(d) {
		p := s.path(d)
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("pki: %w", err)
		}
		if fi.Mode().Perm() != dirMode {
			if err := os.Chmod(p, dirMode); err != nil {
				return fmt.Errorf("pki: %w", err)
			}
		}
		if d == "." {
			return nil
		}
	}
}

// put writes a file atomically (atomicfile: temporary file, fsync,
// rename, fsync of the directory).
func (s store) put(w write) error {
	p := s.path(w.name)
	if err := s.mkdir(path.Dir(w.name)); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(p, w.data, w.mode); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

// keepPrivate makes an existing private key file 0600 again if it was
// opened up; the content and mtime stay.
func (s store) keepPrivate(name string) (bool, error) {
	fi, err := os.Stat(s.path(name))
	if err != nil {
		return false, fmt.Errorf("pki: %w", err)
	}
	if fi.Mode().Perm() == privateMode {
		return false, nil
	}
	if err := os.Chmod(s.path(name), privateMode); err != nil {
		return false, fmt.Errorf("pki: %w", err)
	}
	return true, nil
}

// lockDir takes an exclusive flock on the directory itself, waiting for
// another build that holds it (busy is called once if it does) until ctx
// is done: two builds of one lab must not both make its CAs.
func lockDir(ctx context.Context, dir string, busy func()) (unlock func(), err error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if err := iox.Flock(ctx, d, busy); err != nil {
		d.Close()
		return nil, fmt.Errorf("pki: locking %s: %w", dir, err)
	}
	return func() {
		_ = unix.Flock(int(d.Fd()), unix.LOCK_UN)
		d.Close()
	}, nil
}
