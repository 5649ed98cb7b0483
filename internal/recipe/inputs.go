package recipe

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/iox"
	"github.com/labbake/labbake/internal/source/debian"
	"github.com/labbake/labbake/internal/source/gobuild"
)

// Artifact is a file (or files) put into the image from exactly one
// source: a URL pinned by sha256, members of an archive fetched by URL, a
// path inside an OCI image, a file of the lab dir, or a Go program built
// from its module.
type Artifact struct {
	Dest string // absolute in the image; ending in "/" means a directory
	Mode uint32 // 0755 unless set (artifacts are mostly programs)
	UID  int
	GID  int
	// Capabilities are the file capabilities every regular file of the
	// artifact gets (security.capability, as setcap NAMES=+ep writes it):
	// canonical names (CAP_NET_BIND_SERVICE), each once, in the kernel's
	// number order; nil for none.
	Capabilities []string

	URL       string // url: the file itself
	Archive   string // archive: a .tar.gz/.tgz/.tar.zst/.tar.xz/.zip or a Debian .deb (its data.tar's members) fetched by URL
	Extract   []string
	SHA256    string // "sha256:<hex>" when the recipe pins it
	SHA256URL string // else a checksum file to read it from (recorded in the lock)

	Image string // image: an OCI reference
	Path  string // path inside the image

	File string // file: absolute host path inside the lab dir

	// Go is a Go program built from a module at a version (go:): its
	// binary at dest, or several binaries in the dest directory.
	Go *gobuild.Spec

	Pos Pos
}

var (
	transports = []string{"docker://", "oci:", "oci-archive:", "docker-archive:", "containers-storage:"}
)

// imageRef checks an OCI image reference: a transport prefix that
// containers/image understands and something after it.
func (d *decoder) imageRef(n *yaml.Node, field string) (string, bool) {
	s, ok := d.str(n, field)
	if !ok {
		return "", false
	}
	for _, t := range transports {
		if strings.HasPrefix(s, t) && len(s) > len(t) {
			return s, true
		}
	}
	d.errorf(n, field, "image reference %q needs a transport: docker://REPO:TAG, oci:DIR:TAG, oci-archive:FILE, docker-archive:FILE or containers-storage:REF", s)
	return "", false
}

func (d *decoder) strList(n *yaml.Node, field string) ([]string, bool) {
	items, ok := d.sequence(n, field)
	if !ok {
		return nil, false
	}
	var out []string
	good := true
	for i, item := range items {
		s, ok := d.str(item, indexPath(field, i))
		if !ok {
			good = false
			continue
		}
		out = append(out, s)
	}
	return out, good
}

// decodeDebian decodes base.debian and checks it with the Debian spec's
// own Validate, each problem placed at the field it names.
func (d *decoder) decodeDebian(n *yaml.Node) *Debian {
	const field = "base.debian"
	keys := []string{"suite", "mirror", "components", "variant", "packages", "snapshot", "extra", "docs"}
	f, ok := d.mapping(n, field, keys...)
	if !ok {
		return nil
	}
	deb := &Debian{Pos: d.pos(n)}
	good := true
	if dn := f.get("docs"); dn != nil {
		v, ok := d.boolean(dn, field+".docs")
		deb.Docs, good = v, good && ok
	}
	for _, s := range []struct {
		key string
		dst *string
	}{{"suite", &deb.Suite}, {"mirror", &deb.Mirror}, {"variant", &deb.Variant}, {"snapshot", &deb.Snapshot}} {
		if vn := f.get(s.key); vn != nil {
			v, ok := d.str(vn, field+"."+s.key)
			good = good && ok
			*s.dst = v
		}
	}
	for _, l := range []struct {
		key string
		dst *[]string
	}{{"components", &deb.Components}, {"packages", &deb.Packages}, {"extra", &deb.Extra}} {
		if ln := f.get(l.key); ln != nil {
			vals, ok := d.strList(ln, field+"."+l.key)
			good = good && ok
			*l.dst = vals
		}
	}
	if !good {
		return nil
	}
	var joined interface{ Unwrap() []error }
	err := deb.Spec().Validate()
	if err == nil {
		return deb
	}
	if !errors.As(err, &joined) {
		d.errorf(n, field, "%v", err)
		return nil
	}
	for _, e := range joined.Unwrap() {
		var fe *debian.FieldError
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

// Spec is the mmdebstrap spec of the base, for the Debian builder.
func (deb *Debian) Spec() debian.Spec {
	return debian.Spec{
		Suite: deb.Suite, Mirror: deb.Mirror, Components: deb.Components, Variant: deb.Variant,
		Packages: deb.Packages, Snapshot: deb.Snapshot, Extra: deb.Extra, Docs: deb.Docs,
	}
}

func (d *decoder) decodeArtifacts(l *Lab, n *yaml.Node) []Artifact {
	return d.artifactList(l, n, "artifacts")
}

// artifactList decodes a list of artifacts at field (artifacts, or a
// built image's files): each with exactly one source, dests unique.
func (d *decoder) artifactList(l *Lab, n *yaml.Node, field string) []Artifact {
	items, _ := d.sequence(n, field)
	var out []Artifact
	seen := map[string]string{}
	for i, item := range items {
		path := indexPath(field, i)
		if a, ok := d.decodeArtifact(l, item, path, seen); ok {
			out = append(out, a)
		}
	}
	return out
}

// decodeArtifact decodes one artifact at path; seen holds the dests of
// the list so far.
func (d *decoder) decodeArtifact(l *Lab, item *yaml.Node, path string, seen map[string]string) (Artifact, bool) {
	if isNull(item) {
		d.errorf(item, path, "expected a mapping, got null")
		return Artifact{}, false
	}
	f, ok := d.mapping(item, path, "dest", "mode", "owner", "url", "archive", "extract", "sha256", "image", "path", "file", "go", "capabilities")
	if !ok {
		return Artifact{}, false
	}
	a := Artifact{Mode: 0o755, Pos: d.pos(item)}
	good := true
	if dn := f.get("dest"); dn == nil {
		d.errorf(f.at("dest"), path+".dest", "dest is required: where the artifact goes in the image")
		good = false
	} else if s, ok := d.str(dn, path+".dest"); !ok {
		good = false
	} else if msg := checkImagePath(strings.TrimSuffix(s, "/")); msg != "" && s != "/" {
		d.errorf(dn, path+".dest", "%s", msg)
		good = false
	} else if first, dup := seen[s]; dup && !strings.HasSuffix(s, "/") {
		d.errorf(dn, path+".dest", "duplicate dest %s (also %s)", s, first)
		good = false
	} else {
		seen[s] = path
		a.Dest = s
	}
	var kinds []string
	for _, k := range []string{"url", "archive", "image", "file", "go"} {
		if f.get(k) != nil {
			kinds = append(kinds, k)
		}
	}
	switch {
	case len(kinds) == 0:
		d.errorf(item, path, "set one of url, archive, image, file or go")
		good = false
	case len(kinds) > 1:
		d.errorf(item, path, "set only one of url, archive, image, file or go, not %s", strings.Join(kinds, " and "))
		good = false
	}
	kind := ""
	if len(kinds) == 1 {
		kind = kinds[0]
	}
	// Keys that belong to another kind are mistakes worth naming.
	allowed := map[string][]string{"url": {"sha256"}, "archive": {"sha256", "extract"}, "image": {"path"}, "file": nil, "go": nil}
	for _, k := range []string{"sha256", "extract", "path"} {
		if kn := f.get(k); kn != nil && kind != "" && !slices.Contains(allowed[kind], k) {
			d.errorf(kn, path+"."+k, "%s does not apply to a %s artifact", k, kind)
			good = false
		}
	}
	switch kind {
	case "url", "archive":
		un := f.get(kind)
		s, ok := d.str(un, path+"."+kind)
		if ok {
			if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				d.errorf(un, path+"."+kind, "%q is not an http(s) URL", s)
				ok = false
			}
		}
		good = good && ok
		if kind == "url" {
			a.URL = s
		} else {
			a.Archive = s
		}
		good = d.artifactSHA(f, path, &a) && good
		if kind == "archive" {
			en := f.get("extract")
			if en == nil {
				d.errorf(f.at("extract"), path+".extract", "extract is required: the archive members to take")
				good = false
				break
			}
			vals, ok := d.strList(en, path+".extract")
			good = good && ok
			if len(vals) == 0 && ok {
				d.errorf(en, path+".extract", "extract lists no member")
				good = false
			}
			if len(vals) > 1 && !strings.HasSuffix(a.Dest, "/") {
				d.errorf(en, path+".extract", "several members need a dest directory ending in /")
				good = false
			}
			a.Extract = vals
		}
	case "image":
		ref, ok := d.imageRef(f.get("image"), path+".image")
		good = good && ok
		a.Image = ref
		pn := f.get("path")
		if pn == nil {
			d.errorf(f.at("path"), path+".path", "path is required: the file or directory to take from the image")
			good = false
			break
		}
		s, ok := d.str(pn, path+".path")
		if ok {
			if msg := checkImagePath(s); msg != "" {
				d.errorf(pn, path+".path", "%s", msg)
				ok = false
			}
		}
		good = good && ok
		a.Path = s
	case "file":
		p, ok := d.labPath(l, f.get("file"), path+".file", "file", regularKind)
		a.File = p
		good = good && ok
	case "go":
		a.Go = d.decodeGo(f.get("go"), path+".go", a.Dest, f.get("dest"))
		good = good && a.Go != nil
	}
	good = d.modeOwner(f, path, &a.Mode, &a.UID, &a.GID) && good
	if cn := f.get("capabilities"); cn != nil {
		caps, ok := d.capabilities(cn, path+".capabilities")
		a.Capabilities, good = caps, good && ok
	}
	return a, good
}

// artifactSHA decodes sha256: "<hex>" / "sha256:<hex>" / {url: CHECKSUM-FILE}.
func (d *decoder) artifactSHA(f fields, path string, a *Artifact) bool {
	sn := f.get("sha256")
	if sn == nil {
		d.errorf(f.at("sha256"), path+".sha256", "sha256 is required: the digest, or {url: CHECKSUM-FILE}")
		return false
	}
	if sn.Kind == yaml.MappingNode {
		mf, ok := d.mapping(sn, path+".sha256", "url")
		if !ok {
			return false
		}
		un := mf.get("url")
		if un == nil {
			d.errorf(sn, path+".sha256.url", "url is required")
			return false
		}
		s, ok := d.str(un, path+".sha256.url")
		if !ok {
			return false
		}
		if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			d.errorf(un, path+".sha256.url", "%q is not an http(s) URL", s)
			return false
		}
		a.SHA256URL = s
		return true
	}
	s, ok := d.str(sn, path+".sha256")
	if !ok {
		return false
	}
	s = strings.ToLower(s)
	dg, err := iox.ParseDigest("sha256:" + strings.TrimPrefix(s, "sha256:"))
	if err != nil {
		d.errorf(sn, path+".sha256", "%q is not a sha256 digest (64 hex digits, optionally after sha256:)", s)
		return false
	}
	a.SHA256 = dg.String()
	return true
}

// capabilities decodes a list of capability names as setcap takes them
// (any case, CAP_ optional) into their canonical names, each once, in
// number order: two spellings of one set decode alike.
func (d *decoder) capabilities(n *yaml.Node, field string) ([]string, bool) {
	items, ok := d.sequence(n, field)
	if !ok {
		return nil, false
	}
	if len(items) == 0 {
		d.errorf(n, field, "capabilities lists none: name at least one, e.g. [CAP_NET_BIND_SERVICE], or leave the key out")
		return nil, false
	}
	first := map[int]int{} // capability number → the item naming it first
	var nums []int
	good := true
	for i, item := range items {
		p := indexPath(field, i)
		s, ok := d.str(item, p)
		if !ok {
			good = false
			continue
		}
		name, num, ok := tree.Capability(s)
		if !ok {
			d.errorf(item, p, "unknown capability %q (%s)", s, suggestCapability(s))
			good = false
			continue
		}
		if j, dup := first[num]; dup {
			d.errorf(item, p, "%s is listed twice (also %s)", name, indexPath("capabilities", j))
			good = false
			continue
		}
		first[num] = i
		nums = append(nums, num)
	}
	if !good {
		return nil, false
	}
	slices.Sort(nums)
	names := tree.CapabilityNames()
	out := make([]string, len(nums))
	for i, num := range nums {
		out[i] = names[num]
	}
	return out, true
}

// suggestCapability proposes the capability an unknown name likely
// meant (a near spelling, or the one name it begins), or says what the
// names are.
func suggestCapability(s string) string {
	if strings.ContainsAny(s, "=+,") {
		return "one name an item, without setcap's =+ep: each is made permitted and effective"
	}
	up := strings.ToUpper(s)
	if !strings.HasPrefix(up, "CAP_") {
		up = "CAP_" + up
	}
	best, bd := "", 3
	var prefixed []string
	for _, name := range tree.CapabilityNames() {
		if d := editDistance(up, name); d < bd {
			best, bd = name, d
		}
		if strings.HasPrefix(name, up) {
			prefixed = append(prefixed, name)
		}
	}
	if best == "" && len(prefixed) == 1 {
		best = prefixed[0]
	}
	if best != "" {
		return fmt.Sprintf("did you mean %s?", best)
	}
	return "the names of capabilities(7), such as CAP_NET_BIND_SERVICE, in any case, CAP_ optional"
}
