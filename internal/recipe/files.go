package recipe

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

func (d *decoder) decodeFiles(n *yaml.Node) []File {
	items, _ := d.sequence(n, "files")
	var files []File
	seen := map[string]string{}
	for i, item := range items {
		path := indexPath("files", i)
		if isNull(item) {
			d.errorf(item, path, "expected a mapping, got null")
			continue
		}
		f, ok := d.mapping(item, path, "path", "content", "symlink", "mode", "owner")
		if !ok {
			continue
		}
		file := File{Pos: d.pos(item)}
		good := true
		if pn := f.get("path"); pn == nil {
			d.errorf(f.at("path"), path+".path", "path is required")
			good = false
		} else if p, ok := d.str(pn, path+".path"); !ok {
			good = false
		} else if msg := checkImagePath(p); msg != "" {
			d.errorf(pn, path+".path", "%s", msg)
			good = false
		} else if first, dup := seen[p]; dup {
			d.errorf(pn, path+".path", "duplicate path %s (also %s)", p, first)
			good = false
		} else {
			seen[p] = path
			file.Path = p
		}
		content, symlink := f.vals["content"], f.vals["symlink"]
		switch {
		case content == nil && symlink == nil:
			d.errorf(item, path, "set one of content or symlink")
			good = false
		case content != nil && symlink != nil:
			d.errorf(item, path, "set only one of content or symlink, not both")
			good = false
		case content != nil:
			file.Mode = 0o644
			switch {
			case isNull(content):
				file.Content = []byte{}
			case content.Kind == yaml.ScalarNode && content.ShortTag() == "!!binary":
				var s string
				if err := content.Decode(&s); err != nil {
					d.errorf(content, path+".content", "invalid !!binary data")
					good = false
				}
				file.Content = []byte(s)
			default:
				s, ok := d.str(content, path+".content")
				good = good && ok
				file.Content = []byte(s)
			}
		default:
			file.Mode = 0o777
			s, ok := d.str(symlink, path+".symlink")
			if ok && (s == "" || strings.ContainsRune(s, 0)) {
				d.errorf(symlink, path+".symlink", "symlink target must be a non-empty path")
				ok = false
			}
			good = good && ok
			file.Symlink = s
		}
		good = d.modeOwner(f, path, &file.Mode, &file.UID, &file.GID) && good
		if content != nil && !d.inline.add(d, content, path+".content", len(file.Content)) {
			good = false
		}
		if good {
			files = append(files, file)
		}
	}
	return files
}

// checkImagePath returns what is wrong with p as a path in the image, or "".
func checkImagePath(p string) string {
	switch {
	case p == "":
		return "path is empty"
	case strings.ContainsRune(p, 0):
		return "path holds a NUL byte"
	case !strings.HasPrefix(p, "/"):
		return fmt.Sprintf("path %q must be absolute, like /etc/motd", p)
	case p == "/":
		return `path must not be "/"`
	case slices.Contains(strings.Split(p, "/"), ".."):
		return fmt.Sprintf("path %q must not contain ..", p)
	case path.Clean(p) != p:
		return fmt.Sprintf("path %q is not clean: use %s", p, path.Clean(p))
	}
	return ""
}

// modeOwner decodes the optional mode ("0644") and owner ("UID:GID") of
// a file or artifact into the given fields, which keep their defaults when
// a key is absent.
func (d *decoder) modeOwner(f fields, path string, mode *uint32, uid, gid *int) bool {
	good := true
	if mn := f.get("mode"); mn != nil {
		if mn.Kind != yaml.ScalarNode || mn.ShortTag() != "!!str" || !modeRe.MatchString(mn.Value) {
			d.errorf(mn, path+".mode", "mode must be a quoted octal string like \"0644\", got %s", describe(mn))
			good = false
		} else {
			m, _ := strconv.ParseUint(mn.Value, 8, 32)
			*mode = uint32(m)
		}
	}
	if on := f.get("owner"); on != nil {
		u, g, ok := parseOwner(on)
		if !ok {
			d.errorf(on, path+".owner", "owner must be a quoted \"UID:GID\" of non-negative integers like \"0:0\", got %s", describe(on))
			good = false
		}
		*uid, *gid = u, g
	}
	return good
}

func parseOwner(n *yaml.Node) (uid, gid int, ok bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return 0, 0, false
	}
	m := ownerRe.FindStringSubmatch(n.Value)
	if m == nil {
		return 0, 0, false
	}
	u, err1 := strconv.ParseInt(m[1], 10, 32)
	g, err2 := strconv.ParseInt(m[2], 10, 32)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return int(u), int(g), true
}
