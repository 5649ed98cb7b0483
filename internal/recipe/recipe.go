package recipe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Recipe is RecipeContext without a context.
func (l *Lab) Recipe(role string) (*Recipe, error) {
	return l.RecipeContext(context.Background(), role)
}

// RecipeContext renders recipes/ROLE.yaml and the recipes it extends,
// merges them, decodes the result strictly and checks it against the lab
// directory. Problems are returned as an ErrorList; when ctx is done first,
// its error.
func (l *Lab) RecipeContext(ctx context.Context, role string) (*Recipe, error) {
	rec, err := l.recipe(ctx, role)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("loading the recipe of %s: %w", role, ctx.Err())
	}
	return rec, err
}

func (l *Lab) recipe(ctx context.Context, role string) (*Recipe, error) {
	file := "recipes/" + role + ".yaml"
	if !hostNameRe.MatchString(role) {
		return nil, ErrorList{{Pos: Pos{File: file}, Msg: fmt.Sprintf("invalid role %q: a role is a-z, 0-9 and '-'", role)}}
	}
	d := newDecoder(ctx)
	rec := &Recipe{Role: role}

	// Follow the extends chain: role file first.
	var roots []*yaml.Node
	chain := []string{role}
	var from *yaml.Node // the extends value naming the current file
	for name := role; ; {
		file := "recipes/" + name + ".yaml"
		src, err := l.readLabFile(file)
		if err != nil {
			switch {
			case from == nil && errors.Is(err, fs.ErrNotExist):
				d.add(Pos{File: file}, "", "unknown role %q: no recipe %s in the lab", role, file)
			case from == nil:
				d.add(Pos{File: file}, "", "reading recipe: %v", err)
			case errors.Is(err, fs.ErrNotExist):
				d.errorf(from, "extends", "recipe %s not found", file)
			default:
				d.errorf(from, "extends", "reading recipe %s: %v", file, err)
			}
			break
		}
		out, terr := render(d.ctx, file, src, l.templateData(role), maxYAMLFile)
		if terr != nil {
			d.addErr(terr)
			break
		}
		rec.Sources = append(rec.Sources, Source{File: file, Rendered: out})
		root, ok := d.parse(file, src, out)
		if !ok {
			break
		}
		if root.Kind != yaml.MappingNode {
			d.errorf(root, "", "a recipe must be a mapping, got %s", describe(root))
			break
		}
		ext, rest := splitExtends(root)
		d.files[rest] = d.files[root]
		roots = append(roots, rest)
		if ext == nil {
			break
		}
		parent, ok := d.str(ext, "extends")
		if !ok {
			break
		}
		if !hostNameRe.MatchString(parent) {
			d.errorf(ext, "extends", "%q is not a recipe name (a-z, 0-9 and '-')", parent)
			break
		}
		chain = append(chain, parent)
		if i := slices.Index(chain[:len(chain)-1], parent); i >= 0 {
			d.errorf(ext, "extends", "extends cycle: %s", strings.Join(chain[i:], " -> "))
			break
		}
		name, from = parent, ext
	}
	if d.failed() {
		return nil, d.err()
	}

	merged := roots[len(roots)-1]
	for i := len(roots) - 2; i >= 0; i-- {
		merged = d.merge(merged, roots[i], true)
	}
	d.decodeRecipe(l, merged, rec)
	if d.failed() {
		return nil, d.err()
	}
	out, err := encodeYAML(merged)
	if err != nil {
		d.add(Pos{File: file}, "", "encoding the rendered recipe: %v", err)
		return nil, d.err()
	}
	rec.Rendered = out
	return rec, nil
}

func (d *decoder) decodeRecipe(l *Lab, root *yaml.Node, rec *Recipe) {
	f, ok := d.mapping(root, "", "base", "layers", "artifacts", "files", "units", "overlays", "images", "containerd", "disk", "kernel", "checks", "secrets")
	if !ok {
		return
	}
	if !d.checkEntries(f) {
		return
	}
	rec.Secrets = d.decodeSecrets(f.get("secrets"))
	rec.Base = d.decodeBase(l, f)
	rec.Layers = d.decodeLayers(l, f.get("layers"))
	rec.Artifacts = d.decodeArtifacts(l, f.get("artifacts"))
	rec.Files = d.decodeFiles(f.get("files"))
	rec.Units = d.decodeUnits(l, f.get("units"), rec.Role)
	rec.Overlays = d.decodeOverlays(l, f.get("overlays"), rec.Role)
	rec.Images = d.decodeImages(l, f.get("images"))
	rec.Containerd = d.decodeContainerd(f)
	rec.Disk = d.decodeDisk(f)
	rec.Kernel = d.decodeKernel(f)
	rec.Checks = d.decodeChecks(f.get("checks"))
}

// encodeYAML prints a merged recipe: block or flow style as written, with
// comments and anchors dropped, indented by two spaces.
func encodeYAML(root *yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(cleanCopy(root)); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func cleanCopy(n *yaml.Node) *yaml.Node {
	c := *n
	c.HeadComment, c.LineComment, c.FootComment, c.Anchor = "", "", "", ""
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, x := range n.Content {
		c.Content[i] = cleanCopy(x)
	}
	return &c
}
