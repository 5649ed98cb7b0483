package tree

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// cleanRel turns a path in any form ("/a/b", "a/b/", "./a") into a clean
// path relative to the root ("." for the root itself). A path that leaves the
// root after cleaning is an error, as is an empty one.
func cleanRel(p string) (string, error) {
	if p == "" {
		return "", errors.New("empty name")
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", errors.New("name contains a NUL byte")
	}
	s := strings.TrimLeft(p, "/")
	if s == "" {
		return ".", nil
	}
	s = path.Clean(s)
	if s == ".." || strings.HasPrefix(s, "../") {
		return "", ErrLeavesRoot
	}
	return s, nil
}

// splitLast splits a clean relative path into its parent ("." at the top)
// and its last component.
func splitLast(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ".", p
	}
	return p[:i], p[i+1:]
}

// join joins a clean relative dir ("." for the root) and a name.
func join(dir, name string) string {
	if dir == "." || dir == "" {
		return name
	}
	return dir + "/" + name
}

// resolve returns the canonical path of the clean relative path p: its
// parent components resolved inside the tree, its final component not
// followed. The result need not exist.
func (t *Tree) resolve(p string) (string, error) {
	if p == "." {
		return ".", nil
	}
	dir, base := splitLast(p)
	rdir, err := t.resolveDir(dir)
	if err != nil {
		return "", err
	}
	return join(rdir, base), nil
}

// resolveDir resolves every component of the clean relative path dir inside
// the tree, following symlinks (absolute targets start at the root, ".."
// clamps at the root). Components that do not exist are kept as they are;
// everything below a missing component is missing too. The result is a
// clean relative path whose existing prefix is made of directories.
func (t *Tree) resolveDir(dir string) (string, error) {
	cur := "" // "" is the root
	rest := dir
	followed := 0
	missing := false
	for rest != "" {
		var comp string
		comp, rest, _ = strings.Cut(rest, "/")
		switch comp {
		case "", ".":
			continue
		case "..":
			if i := strings.LastIndexByte(cur, '/'); i >= 0 {
				cur = cur[:i]
			} else {
				cur = ""
			}
			// Going up from a missing directory lands on an existing one
			// or on another missing one; look again.
			missing = missing && cur != "" && t.nodes[cur] == nil
			continue
		}
		next := comp
		if cur != "" {
			next = cur + "/" + comp
		}
		if missing {
			cur = next
			continue
		}
		n, ok := t.nodes[next]
		if !ok {
			missing = true
			cur = next
			continue
		}
		switch n.e.Type {
		case Dir:
			cur = next
		case Symlink:
			followed++
			if followed > maxSymlinks {
				return "", fmt.Errorf("resolving %q: %w", dir, ErrSymlinkLoop)
			}
			target := n.e.Linkname
			if strings.HasPrefix(target, "/") {
				cur = ""
			}
			if rest != "" {
				rest = target + "/" + rest
			} else {
				rest = target
			}
		default:
			return "", fmt.Errorf("resolving %q: %q is a %s, not a directory", dir, next, n.e.Type)
		}
	}
	if cur == "" {
		return ".", nil
	}
	return cur, nil
}
