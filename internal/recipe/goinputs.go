package recipe

import (
	"errors"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/labbake/labbake/internal/source/gobuild"
)

// decodeGo decodes an artifact's go: a Go program built from a module at a
// version, checked with the go source's own Validate, each problem placed
// at the field it names. dest is the artifact's (several packages need a
// directory).
func (d *decoder) decodeGo(n *yaml.Node, field, dest string, destNode *yaml.Node) *gobuild.Spec {
	keys := []string{"module", "version", "packages", "replace_staging", "tags", "ldflags", "toolchain"}
	f, ok := d.mapping(n, field, keys...)
	if !ok {
		return nil
	}
	s := &gobuild.Spec{}
	good := true
	for _, v := range []struct {
		key string
		dst *string
	}{{"module", &s.Module}, {"version", &s.Version}, {"toolchain", &s.Toolchain}} {
		if vn := f.get(v.key); vn != nil {
			str, ok := d.str(vn, field+"."+v.key)
			good = good && ok
			*v.dst = str
		}
	}
	for _, l := range []struct {
		key string
		dst *[]string
	}{{"packages", &s.Packages}, {"tags", &s.Tags}, {"ldflags", &s.LDFlags}} {
		if ln := f.get(l.key); ln != nil {
			vals, ok := d.strList(ln, field+"."+l.key)
			good = good && ok
			*l.dst = vals
		}
	}
	if bn := f.get("replace_staging"); bn != nil {
		v, ok := d.boolean(bn, field+".replace_staging")
		s.ReplaceStaging, good = v, good && ok
	}
	if !good {
		return nil
	}
	if err := s.Validate(); err != nil {
		var joined interface{ Unwrap() []error }
		if !errors.As(err, &joined) {
			d.errorf(n, field, "%v", err)
			return nil
		}
		for _, e := range joined.Unwrap() {
			var fe *gobuild.FieldError
			if !errors.As(e, &fe) {
				d.errorf(n, field, "%v", e)
				continue
			}
			path := field + "." + fe.Field
			at := f.get(fe.Field)
			if at == nil {
				at = f.at(fe.Field)
			}
			if fe.Index >= 0 {
				path = indexPath(path, fe.Index)
				if items, _ := d.sequence(at, path); fe.Index < len(items) {
					at = items[fe.Index]
				}
			}
			d.errorf(at, path, "%s", fe.Msg)
		}
		return nil
	}
	if len(s.Packages) > 1 && dest != "" && !strings.HasSuffix(dest, "/") {
		d.errorf(destNode, strings.TrimSuffix(field, ".go")+".dest", "several packages need a dest directory ending in /")
		return nil
	}
	return s
}
