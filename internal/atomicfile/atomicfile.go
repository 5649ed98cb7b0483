package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File is a file being written; its content appears at its path on Commit.
// Write to it as to an *os.File; Abort (or a failed Commit) leaves the
// destination as it was.
type File struct {
	*os.File
	path   string
	perm   fs.FileMode
	noRepl bool
	done   bool
}

// Create starts writing path (mode perm, umask ignored); Commit replaces
// whatever is at path, a symlink itself rather than its target.
func Create(path string, perm fs.FileMode) (*File, error) {
	return create(path, perm, false)
}

// CreateNew is Create for a path that must not exist yet: Commit fails
// with an error wrapping fs.ErrExist if anything, even a dangling symlink,
// is at path by then.
func CreateNew(path string, perm fs.FileMode) (*File, error) {
	return create(path, perm, true)
}

func create(path string, perm fs.FileMode, noRepl bool) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return &File{File: f, path: path, perm: perm, noRepl: noRepl}, nil
}

// Commit makes the content durable and puts it at the destination path.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("writing %s: already committed or aborted", f.path)
	}
	f.done = true
	tmp := f.Name()
	err := f.Chmod(f.perm)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if f.noRepl {
			err = renameNoReplace(tmp, f.path)
		} else {
			err = os.Rename(tmp, f.path)
		}
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", f.path, err)
	}
	if err := SyncDir(filepath.Dir(f.path)); err != nil {
		return fmt.Errorf("writing %s: %w", f.path, err)
	}
	return nil
}

// Abort discards what was written. It is safe to call after Commit (then it
// does nothing), so `defer f.Abort()` cleans up on every error path.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	_ = f.Close()
	_ = os.Remove(f.Name())
}

// WriteFile writes data to path atomically, replacing what is there.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	return write(f, data)
}

// WriteNew writes data to path atomically if nothing is at path; otherwise
// it fails with an error wrapping fs.ErrExist and changes nothing.
func WriteNew(path string, data []byte, perm fs.FileMode) error {
	f, err := CreateNew(path, perm)
	if err != nil {
		return err
	}
	return write(f, data)
}

func write(f *File, data []byte) error {
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", f.path, err)
	}
	return f.Commit()
}

// linkNoReplace renames old to new unless new exists, with a hard link:
// link(2) never follows a symlink at new and fails if new exists.
func linkNoReplace(old, new string) error {
	if err := os.Link(old, new); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fs.ErrExist
		}
		return err
	}
	return os.Remove(old)
}

// SyncDir fsyncs the directory dir, making the names created, renamed or
// removed in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// MkdirPrivate makes dir (and its parents) and makes sure dir itself is
// a directory, not a symlink, with mode perm.
func MkdirPrivate(dir string, perm fs.FileMode) error {
	if err := os.MkdirAll(dir, perm); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("creating %s: not a directory (a symlink?)", dir)
	}
	if st.Mode().Perm() != perm {
		if err := os.Chmod(dir, perm); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
	}
	return nil
}
