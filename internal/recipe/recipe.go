package recipe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/labbake/labbake/builders/boot"
	"github.com/labbake/labbake/builders/disk"
	"github.com/labbake/labbake/builders/tree"
)

// Recipe is the effective recipe of a role: its file and those it extends
// rendered, merged, decoded and checked. Host paths are absolute.
type Recipe struct {
	Role      string
	Sources   []Source // every recipe file used, the role's first, then what it extends
	Rendered  []byte   // the merged recipe as YAML (what `labbake render ROLE` prints)
	Base      Base
	Layers    []Layer
	Artifacts []Artifact
	Files     []File
	Units     []Unit
	Overlays  []Overlay
	Disk      Disk
	Kernel    Kernel
	Checks    Checks
	Secrets   Secrets
}

// Source is one recipe file and its rendered text.
type Source struct {
	File     string // relative to the lab dir: "recipes/common.yaml"
	Rendered []byte
}

// Base is the root file system the image starts from, exactly one of: a tar
// archive, a directory tree, a Debian system made by mmdebstrap, or an OCI
// image.
type Base struct {
	Tar    string
	Dir    string
	Debian *Debian
	OCI    string // an image reference: docker://…, oci:DIR:TAG, oci-archive:FILE, …
	Pos    Pos
}

// Debian describes a root file system built with mmdebstrap.
type Debian struct {
	Suite      string
	Mirror     string
	Components []string
	Variant    string
	Packages   []string
	Snapshot   string
	Extra      []string // more suites of the same mirror, e.g. bookworm-updates
	Docs       bool     // keep documentation, man and info pages (left out by default)
	Pos        Pos
}

// Layer is unpacked over the base, in order: a tar archive or an OCI image
// (all its layers).
type Layer struct {
	Tar string
	OCI string
	Pos Pos
}

// File is a file or symbolic link written into the image.
type File struct {
	Path     string // absolute and clean in the image: "/etc/motd"
	Content  []byte // for a regular file
	Symlink  string // link target, for a symbolic link
	Mode     uint32 // permission bits; 0644 for a file, 0777 for a link unless set
	UID, GID int
	Pos      Pos
}

// Unit is a systemd unit installed into the image.
type Unit struct {
	Name    string
	Source  string // absolute path of units/NAME or units/NAME.tmpl
	Content []byte // the file, rendered when it is a .tmpl
	Enable  bool
	Pos     Pos
}

// Overlay is a directory tree copied over the image. Its *.tmpl files are
// rendered: Templates maps their slash path relative to the overlay root,
// without .tmpl, to the rendered bytes.
type Overlay struct {
	Name      string
	Dir       string
	Templates map[string][]byte
	Pos       Pos
}

// Disk is the image's disk and root file system.
type Disk struct {
	Size         int64    // bytes; default 8GiB
	Filesystem   string   // only "ext4"
	FstabOptions []string // root mount options; default discard, noatime
	// Boot are the boot methods installed ("uefi", "bios"), in that
	// order, without repeats; default both. Empty: the image is not meant
	// to boot and needs no kernel.
	Boot    []string
	BootPos Pos  // of disk.boot, or of the recipe when it is not set
	BootSet bool // the recipe sets disk.boot
	SizePos Pos  // of disk.size, or of disk (or the recipe) when it is not set
	Pos     Pos
}

// Boot methods: the disk builder's (builders/boot), in the order they are
// installed.
const (
	BootUEFI = boot.UEFI
	BootBIOS = boot.BIOS
)

// DefaultCmdline is the kernel command line after the root when a recipe
// sets none: the serial console (what QEMU -nographic and `labbake test`
// read) and the screen.
const DefaultCmdline = "console=ttyS0,115200 console=tty0"

// Kernel picks the kernel to boot and its command line.
type Kernel struct {
	// Version pins the kernel release to boot ("6.12.57+deb13-amd64");
	// "" takes the highest in the image.
	Version string
	// Cmdline follows root=UUID=… ro on the kernel command line;
	// default DefaultCmdline.
	Cmdline string
	Pos     Pos // of kernel, or of the recipe when it is not set
}

// Disk size bounds. The minimum is the disk builder's: the fixed
// partitions and the smallest root it makes.
const (
	MinDiskSize = disk.MinSize
	MaxDiskSize = 2 * TiB
)

var (
	modeRe  = regexp.MustCompile(`^0?[0-7]{3,4}$`)
	ownerRe = regexp.MustCompile(`^([0-9]+):([0-9]+)$`)
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
		if i := indexOf(chain[:len(chain)-1], parent); i >= 0 {
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

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// splitExtends returns the extends value of a recipe's root mapping and a
// copy of the mapping without it.
func splitExtends(root *yaml.Node) (ext, rest *yaml.Node) {
	c := *root
	c.Content = nil
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "extends" {
			if ext == nil {
				ext = v
			}
			continue
		}
		c.Content = append(c.Content, k, v)
	}
	if isNull(ext) {
		ext = nil
	}
	return ext, &c
}

// merge lays child over parent: mappings merge key by key (parent's keys
// first, in order), lists append (parent's items first), anything else is
// replaced by the child's. At the top, base is replaced as a whole: it is
// a choice of tar or dir, not a set of fields. New nodes are recorded with
// the child's file, so positions stay right.
func (d *decoder) merge(parent, child *yaml.Node, top bool) *yaml.Node {
	switch {
	case parent == nil:
		return child
	case child == nil:
		return parent
	case parent.Kind == yaml.MappingNode && child.Kind == yaml.MappingNode:
		m := *child
		m.Content = nil
		d.files[&m] = d.files[child]
		idx := map[string]int{}
		for i := 0; i+1 < len(child.Content); i += 2 {
			if k := child.Content[i]; k.Kind == yaml.ScalarNode {
				if _, dup := idx[k.Value]; !dup {
					idx[k.Value] = i
				}
			}
		}
		used := map[int]bool{}
		for i := 0; i+1 < len(parent.Content); i += 2 {
			k, v := parent.Content[i], parent.Content[i+1]
			j, ok := -1, false
			if k.Kind == yaml.ScalarNode {
				j, ok = idx[k.Value]
			}
			if !ok || used[j] {
				m.Content = append(m.Content, k, v)
				continue
			}
			used[j] = true
			ck, cv := child.Content[j], child.Content[j+1]
			if top && k.Value == "base" {
				m.Content = append(m.Content, ck, cv)
			} else {
				m.Content = append(m.Content, ck, d.merge(v, cv, false))
			}
		}
		for i := 0; i+1 < len(child.Content); i += 2 {
			if !used[i] {
				m.Content = append(m.Content, child.Content[i], child.Content[i+1])
			}
		}
		return &m
	case parent.Kind == yaml.SequenceNode && child.Kind == yaml.SequenceNode:
		s := *child
		s.Content = append(append([]*yaml.Node{}, parent.Content...), child.Content...)
		d.files[&s] = d.files[child]
		return &s
	default:
		return child
	}
}

func (d *decoder) decodeRecipe(l *Lab, root *yaml.Node, rec *Recipe) {
	f, ok := d.mapping(root, "", "base", "layers", "artifacts", "files", "units", "overlays", "disk", "kernel", "checks", "secrets")
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
	rec.Disk = d.decodeDisk(f)
	rec.Kernel = d.decodeKernel(f)
	rec.Checks = d.decodeChecks(f.get("checks"))
}

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

func (d *decoder) decodeDisk(top fields) Disk {
	dk := Disk{Size: 8 * GiB, Filesystem: "ext4", FstabOptions: []string{"discard", "noatime"},
		Boot: slices.Clone(boot.Methods), BootPos: d.pos(top.node)}
	n := top.get("disk")
	if n == nil {
		dk.Pos = d.pos(top.node)
		dk.SizePos = dk.Pos
		return dk
	}
	dk.Pos = d.pos(n)
	dk.SizePos = dk.Pos
	f, ok := d.mapping(n, "disk", "size", "filesystem", "fstab", "boot")
	if !ok {
		return dk
	}
	if bn := f.get("boot"); bn != nil {
		dk.BootPos, dk.BootSet = d.pos(bn), true
		if isNull(bn) {
			dk.Boot = []string{}
		} else if items, ok := d.sequence(bn, "disk.boot"); ok {
			seen := map[string]bool{}
			for i, item := range items {
				path := indexPath("disk.boot", i)
				if s, ok := d.str(item, path); ok {
					if slices.Contains(boot.Methods, s) {
						seen[s] = true
					} else {
						d.errorf(item, path, "unknown boot method %q: use %s", s, strings.Join(boot.Methods, " or "))
					}
				}
			}
			// In a fixed order: extends appends lists, and the order
			// written does not matter.
			dk.Boot = []string{}
			for _, m := range boot.Methods {
				if seen[m] {
					dk.Boot = append(dk.Boot, m)
				}
			}
		}
	}
	if sn := f.get("size"); sn != nil {
		dk.SizePos = d.pos(sn)
		var s string
		ok := true
		switch {
		case sn.Kind == yaml.ScalarNode && sn.ShortTag() == "!!int":
			s = sn.Value
		default:
			s, ok = d.str(sn, "disk.size")
		}
		if ok {
			size, err := ParseSize(s)
			switch {
			case err != nil:
				d.errorf(sn, "disk.size", "%v", err)
			case size < MinDiskSize:
				d.errorf(sn, "disk.size", "size %s is too small: the minimum is %s", s, FormatSize(MinDiskSize))
			case size > MaxDiskSize:
				d.errorf(sn, "disk.size", "size %s is too large: the maximum is %s", s, FormatSize(MaxDiskSize))
			case size%MiB != 0:
				d.errorf(sn, "disk.size", "size %s is not a multiple of 1MiB", s)
			default:
				dk.Size = size
			}
		}
	}
	if fn := f.get("filesystem"); fn != nil {
		if s, ok := d.str(fn, "disk.filesystem"); ok {
			if s != "ext4" {
				d.errorf(fn, "disk.filesystem", "filesystem %q is not supported: use ext4", s)
			}
		}
	}
	if fsn := f.get("fstab"); fsn != nil {
		ff, ok := d.mapping(fsn, "disk.fstab", "options")
		if ok && ff.vals["options"] != nil && !isNull(ff.vals["options"]) {
			items, ok := d.sequence(ff.vals["options"], "disk.fstab.options")
			if ok {
				opts := []string{}
				seen := map[string]bool{}
				for i, item := range items {
					path := indexPath("disk.fstab.options", i)
					s, ok := d.str(item, path)
					if !ok {
						continue
					}
					switch {
					case s == "" || strings.ContainsAny(s, " \t\n,#\x00"):
						d.errorf(item, path, "fstab option %q must be non-empty, without spaces or commas", s)
					case seen[s]:
						d.errorf(item, path, "duplicate fstab option %q", s)
					default:
						seen[s] = true
						opts = append(opts, s)
					}
				}
				dk.FstabOptions = opts
			}
		}
	}
	return dk
}

func (d *decoder) decodeKernel(top fields) Kernel {
	k := Kernel{Cmdline: DefaultCmdline, Pos: d.pos(top.node)}
	n := top.get("kernel")
	if n == nil {
		return k
	}
	k.Pos = d.pos(n)
	f, ok := d.mapping(n, "kernel", "version", "cmdline")
	if !ok {
		return k
	}
	if vn := f.get("version"); vn != nil && !isNull(vn) {
		if s, ok := d.str(vn, "kernel.version"); ok {
			if s == "" || strings.ContainsAny(s, "/ \t\n\x00") || s == "." || s == ".." {
				d.errorf(vn, "kernel.version", "kernel version %q must be a kernel release such as 6.12.57+deb13-amd64", s)
			} else {
				k.Version = s
			}
		}
	}
	if cn := f.get("cmdline"); cn != nil {
		if isNull(cn) {
			k.Cmdline = ""
		} else if s, ok := d.str(cn, "kernel.cmdline"); ok {
			switch {
			case strings.ContainsAny(s, "\n\r\x00"):
				d.errorf(cn, "kernel.cmdline", "the kernel command line must be one line")
			case strings.ContainsAny(s, "'\"\\"):
				// Boot loaders treat quotes differently (GRUB escapes
				// them): options are words separated by spaces.
				d.errorf(cn, "kernel.cmdline", "quotes and backslashes are not supported: options are words separated by spaces")
			default:
				k.Cmdline = strings.Join(strings.Fields(s), " ")
			}
		}
	}
	return k
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
