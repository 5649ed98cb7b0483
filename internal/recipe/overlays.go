package recipe

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

func (d *decoder) decodeOverlays(l *Lab, n *yaml.Node, role string) []Overlay {
	items, _ := d.sequence(n, "overlays")
	var overlays []Overlay
	seen := map[string]string{}
	for i, item := range items {
		path := indexPath("overlays", i)
		name, ok := d.str(item, path)
		if !ok {
			continue
		}
		if msg := checkName(name); msg != "" {
			d.errorf(item, path, "%s", msg)
			continue
		}
		if first, dup := seen[name]; dup {
			d.errorf(item, path, "duplicate overlay %s (also %s)", name, first)
			continue
		}
		seen[name] = path
		rel := "overlays/" + name
		dir, err := l.inLab(rel)
		var fi fs.FileInfo
		if err == nil {
			fi, err = os.Stat(dir)
		}
		switch {
		case errors.Is(err, errOutside):
			d.errorf(item, path, "overlay directory %v (%s)", err, pathRule)
			continue
		case errors.Is(err, fs.ErrNotExist):
			d.errorf(item, path, "overlay directory %s not found", rel)
			continue
		case err != nil:
			d.errorf(item, path, "overlay directory %s: %v", rel, err)
			continue
		case !fi.IsDir():
			d.errorf(item, path, "%s is not a directory", rel)
			continue
		}
		o := Overlay{Name: name, Dir: dir, Templates: map[string][]byte{}, Pos: d.pos(item)}
		if d.overlayTemplates(l, item, path, rel, &o, role) {
			overlays = append(overlays, o)
		}
	}
	return overlays
}

// overlayTemplates renders every *.tmpl regular file of an overlay.
func (d *decoder) overlayTemplates(l *Lab, item *yaml.Node, field, rel string, o *Overlay, role string) bool {
	good := true
	plain := map[string]bool{}
	var tmpls []string
	err := filepath.WalkDir(o.Dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, err := filepath.Rel(o.Dir, p)
		if err != nil {
			return err
		}
		r = filepath.ToSlash(r)
		if !e.Type().IsRegular() {
			// The overlay is copied without its *.tmpl entries: one
			// that is not a file would be dropped without a word.
			if r != "." && strings.HasSuffix(r, ".tmpl") {
				d.errorf(item, field, "%s/%s is a %s: a template must be a regular file", rel, r, typeName(e.Type()))
				good = false
				if e.IsDir() {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if strings.HasSuffix(r, ".tmpl") {
			tmpls = append(tmpls, r)
		} else {
			plain[r] = true
		}
		return nil
	})
	if err != nil {
		d.errorf(item, field, "reading %s: %v", rel, err)
		return false
	}
	for _, r := range tmpls {
		key := strings.TrimSuffix(r, ".tmpl")
		if key == "" || strings.HasSuffix(key, "/") {
			d.errorf(item, field, "%s/%s: a template needs a name before .tmpl", rel, r)
			good = false
			continue
		}
		if plain[key] {
			d.errorf(item, field, "both %s/%s and %s/%s exist: keep one", rel, key, rel, r)
			good = false
			continue
		}
		b, err := readCapped(filepath.Join(o.Dir, filepath.FromSlash(r)), maxRendered)
		if err != nil {
			d.errorf(item, field, "reading %s/%s: %v", rel, r, err)
			good = false
			continue
		}
		out, terr := render(d.ctx, rel+"/"+r, b, l.templateData(role), maxRendered)
		if terr != nil {
			d.addErr(terr)
			good = false
			continue
		}
		if !d.inline.add(d, item, field, len(out)) {
			return false
		}
		o.Templates[key] = out
	}
	return good
}
