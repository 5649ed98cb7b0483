package recipe

import (
	"strings"

	"go.yaml.in/yaml/v3"
)

// tarPath decodes and checks the path of a tar archive.
func (d *decoder) tarPath(l *Lab, n *yaml.Node, field string) (string, bool) {
	return d.labPath(l, n, field, "tar file", regularKind)
}

func (d *decoder) decodeBase(l *Lab, top fields) Base {
	n := top.get("base")
	if n == nil {
		d.errorf(top.at("base"), "base", "a recipe needs a base: {tar: FILE}, {dir: DIR}, {debian: {...}} or {oci: REF}")
		return Base{}
	}
	b := Base{Pos: d.pos(n)}
	f, ok := d.mapping(n, "base", "tar", "dir", "debian", "oci")
	if !ok {
		return b
	}
	var set []string
	for _, k := range []string{"tar", "dir", "debian", "oci"} {
		if f.get(k) != nil {
			set = append(set, k)
		}
	}
	switch {
	case len(set) == 0:
		d.errorf(n, "base", "set one of tar, dir, debian or oci")
		return b
	case len(set) > 1:
		d.errorf(n, "base", "set only one of tar, dir, debian or oci, not %s", strings.Join(set, " and "))
		return b
	}
	switch set[0] {
	case "tar":
		b.Tar, _ = d.tarPath(l, f.get("tar"), "base.tar")
	case "oci":
		b.OCI, _ = d.imageRef(f.get("oci"), "base.oci")
	case "debian":
		b.Debian = d.decodeDebian(f.get("debian"))
	default:
		b.Dir, _ = d.labPath(l, f.get("dir"), "base.dir", "directory", dirKind)
	}
	return b
}

func (d *decoder) decodeLayers(l *Lab, n *yaml.Node) []Layer {
	items, _ := d.sequence(n, "layers")
	var layers []Layer
	for i, item := range items {
		path := indexPath("layers", i)
		if isNull(item) {
			d.errorf(item, path, "expected a mapping, got null")
			continue
		}
		f, ok := d.mapping(item, path, "tar", "oci")
		if !ok {
			continue
		}
		tar, oci := f.get("tar"), f.get("oci")
		switch {
		case tar == nil && oci == nil:
			d.errorf(item, path, "set one of tar or oci")
		case tar != nil && oci != nil:
			d.errorf(item, path, "set only one of tar or oci, not both")
		case tar != nil:
			if p, ok := d.tarPath(l, tar, path+".tar"); ok {
				layers = append(layers, Layer{Tar: p, Pos: d.pos(item)})
			}
		default:
			if ref, ok := d.imageRef(oci, path+".oci"); ok {
				layers = append(layers, Layer{OCI: ref, Pos: d.pos(item)})
			}
		}
	}
	return layers
}
