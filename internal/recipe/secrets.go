package recipe

import (
	"path"

	"go.yaml.in/yaml/v3"
)

// Secrets is a recipe's `secrets:`. Images hold no private key: after the
// tree is assembled the bake refuses every file holding private key
// material, except the paths listed under allow (absolute, clean; shell
// patterns as in path.Match, e.g. /usr/share/doc/*/examples/*.key).
type Secrets struct {
	Allow []string
	Pos   Pos
}

func (d *decoder) decodeSecrets(n *yaml.Node) Secrets {
	s := Secrets{}
	if n == nil || isNull(n) {
		return s
	}
	s.Pos = d.pos(n)
	f, ok := d.mapping(n, "secrets", "allow")
	if !ok {
		return s
	}
	items, ok := d.sequence(f.get("allow"), "secrets.allow")
	if !ok {
		return s
	}
	for i, item := range items {
		field := indexPath("secrets.allow", i)
		p, ok := d.str(item, field)
		if !ok {
			continue
		}
		if !path.IsAbs(p) || path.Clean(p) != p {
			d.errorf(item, field, "%q must be an absolute, clean path in the image (like /etc/ssl/private/test.key)", p)
			continue
		}
		if _, err := path.Match(p, "/"); err != nil {
			d.errorf(item, field, "%q is not a valid pattern: %v", p, err)
			continue
		}
		s.Allow = append(s.Allow, p)
	}
	return s
}
