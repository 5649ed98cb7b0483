package tree

import (
	"errors"
	"fmt"
)

// File is an inline file of a recipe: Content for a regular file, or
// Symlink for a symbolic link (not both).
type File struct {
	Path    string
	Content []byte
	Symlink string
	// Mode is the permission bits (07777 mask); 0 means 0644 for a file.
	// It is ignored for symlinks (always 0777).
	Mode     uint32
	UID, GID int
}

// AddFiles adds inline files: Content goes to an owned blob in blobDir,
// Symlink makes a Symlink entry; the time is the epoch. Paths are resolved
// like Add does. Errors name the file.
func (t *Tree) AddFiles(files []File, blobDir string) error {
	if len(files) == 0 {
		return nil
	}
	dir, err := prepareBlobDir(blobDir)
	if err != nil {
		return fmt.Errorf("files: %w", err)
	}
	for _, f := range files {
		if err := t.addFile(f, dir); err != nil {
			return fmt.Errorf("file %q: %w", f.Path, err)
		}
	}
	return nil
}

func (t *Tree) addFile(f File, blobDir string) error {
	e := Entry{Path: f.Path, UID: f.UID, GID: f.GID, ModTime: t.epoch}
	if f.Symlink != "" {
		if f.Content != nil {
			return errors.New("both content and symlink set")
		}
		e.Type, e.Mode, e.Linkname = Symlink, 0o777, f.Symlink
		_, err := t.add(e, nil)
		return err
	}
	// Check the path and owner before writing a blob.
	c, err := cleanRel(f.Path)
	if err != nil {
		return err
	}
	if _, err := t.resolve(c); err != nil {
		return err
	}
	if f.UID < 0 || f.GID < 0 {
		return fmt.Errorf("negative owner %d:%d", f.UID, f.GID)
	}
	e.Type, e.Mode = Regular, f.Mode
	if e.Mode == 0 {
		e.Mode = 0o644
	}
	b, err := writeBlobBytes(blobDir, f.Content)
	if err != nil {
		return err
	}
	e.Content = b
	if _, err := t.add(e, nil); err != nil {
		dropBlob(b)
		return err
	}
	return nil
}
