package recipe

import (
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/labbake/labbake/builders/tree"
)

// checkName reports what is wrong with a unit or overlay name, or "".
func checkName(s string) string {
	switch {
	case s == "":
		return "name is empty"
	case s == "." || s == "..", strings.ContainsAny(s, "/\\\x00"):
		return fmt.Sprintf("%q is not a plain file name", s)
	}
	return ""
}

func (d *decoder) decodeUnits(l *Lab, n *yaml.Node, role string) []Unit {
	items, _ := d.sequence(n, "units")
	var units []Unit
	seen := map[string]string{}
	for i, item := range items {
		path := indexPath("units", i)
		if isNull(item) {
			d.errorf(item, path, "expected a mapping, got null")
			continue
		}
		f, ok := d.mapping(item, path, "name", "enable")
		if !ok {
			continue
		}
		u := Unit{Pos: d.pos(item)}
		good := true
		if en := f.get("enable"); en != nil {
			u.Enable, good = d.boolean(en, path+".enable")
		}
		nn := f.get("name")
		if nn == nil {
			d.errorf(f.at("name"), path+".name", "name is required")
			continue
		}
		name, ok := d.str(nn, path+".name")
		if !ok {
			continue
		}
		if msg := checkName(name); msg != "" {
			d.errorf(nn, path+".name", "%s", msg)
			continue
		}
		if err := tree.CheckUnitName(name); err != nil {
			d.errorf(nn, path+".name", "%v", err)
			continue
		}
		if first, dup := seen[name]; dup {
			d.errorf(nn, path+".name", "duplicate unit %s (also %s)", name, first)
			continue
		}
		seen[name] = path
		u.Name = name
		rel := "units/" + name
		plainPath, plain, perr := l.regularFile(rel)
		tmplPath, tmpl, terr := l.regularFile(rel + ".tmpl")
		switch {
		case errors.Is(perr, errOutside):
			d.errorf(nn, path+".name", "unit file %v (%s)", perr, pathRule)
		case errors.Is(terr, errOutside):
			d.errorf(nn, path+".name", "unit file %v (%s)", terr, pathRule)
		case perr != nil:
			d.errorf(nn, path+".name", "unit file %s: %v", rel, perr)
		case terr != nil:
			d.errorf(nn, path+".name", "unit file %s.tmpl: %v", rel, terr)
		case plain && tmpl:
			d.errorf(nn, path+".name", "both %s and %s.tmpl exist: keep one", rel, rel)
		case !plain && !tmpl:
			d.errorf(nn, path+".name", "unit file %s not found", rel)
		case plain:
			u.Source = plainPath
			b, err := readCapped(u.Source, maxRendered)
			if err != nil {
				d.errorf(nn, path+".name", "reading %s: %v", rel, err)
				good = false
			}
			u.Content = b
		default:
			u.Source = tmplPath
			b, err := readCapped(u.Source, maxRendered)
			if err != nil {
				d.errorf(nn, path+".name", "reading %s.tmpl: %v", rel, err)
				good = false
				break
			}
			out, terr := render(d.ctx, rel+".tmpl", b, l.templateData(role), maxRendered)
			if terr != nil {
				d.addErr(terr)
				good = false
			}
			u.Content = out
		}
		if u.Source != "" && !d.inline.add(d, nn, path+".name", len(u.Content)) {
			good = false
		}
		if good && u.Source != "" {
			units = append(units, u)
		}
	}
	return units
}
