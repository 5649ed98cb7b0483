package recipe

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// pathRule is how labbake reads the paths a recipe names.
const pathRule = "paths in a recipe are relative to the lab dir and stay inside it"

// errOutside marks a path that leads outside the lab dir.
var errOutside = errors.New("leads outside the lab dir")

// inLab resolves p, a path the lab names (a recipe's tar:, dir: or file:,
// or recipes/NAME.yaml, units/NAME, overlays/NAME), to a host path: it is
// relative to the lab dir and must stay inside it once every symbolic link
// on the way is followed. The result is below l.Dir and holds no symbolic
// link, so what is checked is what is read. A missing path gives an error
// matching fs.ErrNotExist; one that leads out, errOutside.
func (l *Lab) inLab(p string) (string, error) {
	switch {
	case p == "":
		return "", errors.New("path is empty")
	case strings.ContainsRune(p, 0):
		return "", errors.New("path holds a NUL byte")
	case filepath.IsAbs(p):
		return "", fmt.Errorf("%s is an absolute path (%s)", p, pathRule)
	}
	root, err := filepath.EvalSymlinks(l.Dir)
	if err != nil {
		return "", fmt.Errorf("lab dir: %w", err)
	}
	// Not filepath.Join: it would drop "link/.." lexically, where the
	// kernel (and EvalSymlinks) go to the parent of the link's target.
	real, err := filepath.EvalSymlinks(root + string(filepath.Separator) + p)
	if err != nil {
		if outside(root, filepath.Join(root, p)) {
			return "", fmt.Errorf("%s %w", p, errOutside)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s: %w", p, fs.ErrNotExist)
		}
		return "", fmt.Errorf("%s: %w", p, err)
	}
	if outside(root, real) {
		if outside(root, filepath.Join(root, p)) {
			return "", fmt.Errorf("%s %w", p, errOutside)
		}
		return "", fmt.Errorf("%s %w through a symbolic link", p, errOutside)
	}
	rel, _ := filepath.Rel(root, real)
	return filepath.Join(l.Dir, rel), nil
}

// outside reports whether the clean absolute path p is not root or below it.
func outside(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// fileKind is what a lab path must be.
type fileKind int

const (
	regularKind fileKind = iota
	dirKind
)

// labPath decodes the string n (the field at path) naming what of the lab
// dir, a regular file or a directory, and returns its host path; problems
// are reported at n.
func (d *decoder) labPath(l *Lab, n *yaml.Node, field, what string, kind fileKind) (string, bool) {
	s, ok := d.str(n, field)
	if !ok {
		return "", false
	}
	if s == "" {
		d.errorf(n, field, "%s path is empty", what)
		return "", false
	}
	p, err := l.inLab(s)
	if err != nil {
		switch {
		case errors.Is(err, errOutside):
			d.errorf(n, field, "%s %v (%s)", what, err, pathRule)
		case errors.Is(err, fs.ErrNotExist):
			d.errorf(n, field, "%s %s not found", what, s)
		default:
			d.errorf(n, field, "%s %v", what, err)
		}
		return "", false
	}
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		d.errorf(n, field, "%s %s: %v", what, s, err)
	case kind == dirKind && !fi.IsDir():
		d.errorf(n, field, "%s is not a directory", s)
	case kind == regularKind && !fi.Mode().IsRegular():
		d.errorf(n, field, "%s is not a regular file", s)
	default:
		return p, true
	}
	return "", false
}

// regularFile resolves rel inside the lab dir and reports whether it is a
// regular file; a missing rel is no error.
func (l *Lab) regularFile(rel string) (string, bool, error) {
	p, err := l.inLab(rel)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errOutside) {
			return "", false, nil
		}
		return "", false, err
	}
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", false, nil
	case err != nil:
		return "", false, err
	case !fi.Mode().IsRegular():
		return "", false, errors.New("not a regular file")
	}
	return p, true, nil
}

// typeName names a file type for messages.
func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	}
	return "special file"
}
