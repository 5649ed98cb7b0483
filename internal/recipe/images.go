package recipe

import (
	"path"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/labbake/labbake/builders/ctrstore"
	"github.com/labbake/labbake/builders/ociimage"
)

// Image is a container image preloaded into the image's containerd: its
// blobs in containerd's content store and its records in containerd's
// metadata, so that pods start without a registry.
type Image struct {
	// Name is the reference as containerd's CRI names it:
	// registry.k8s.io/pause:3.10.2, docker.io/library/nginx:latest, or
	// REPO@sha256:… for a reference with a digest.
	Name string
	// Ref is Name as the OCI source pulls it: docker://NAME.
	Ref string
	// Pinned gives the image CRI's pinned label: the kubelet's image
	// garbage collection never removes it (the sandbox image).
	Pinned bool
	// Build, when set, assembles the image from files instead of pulling
	// it: Ref names it but nothing is pulled.
	Build *ImageBuild
	Pos   Pos
}

// ImageBuild is an image assembled from files (images[].build): one layer
// holding Files, each resolved like an artifact (same keys, pins, cache),
// and a minimal config. Owners are 0:0 unless a file says otherwise; every
// time is the lab's epoch.
type ImageBuild struct {
	Files        []Artifact
	Entrypoint   []string // required
	Cmd          []string
	User         string // "65535", "65532:65532", or a name of the image's /etc/passwd
	Env          []string
	WorkingDir   string            // workdir: absolute
	ExposedPorts []string          // ports: "53/udp", "9153/tcp", "8080"
	Labels       map[string]string // labels
	Pos          Pos
}

// Containerd is where the preloaded images go: containerd's root and the
// namespace its CRI plugin uses.
type Containerd struct {
	Namespace string // default k8s.io
	Root      string // default /var/lib/containerd
	Pos       Pos
}

// namespaceRe is a containerd namespace: labels of letters and digits
// joined by '.', '_' or '-' (containerd's identifiers package).
var namespaceRe = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

// maxNamespace is containerd's bound on an identifier.
const maxNamespace = 76

func (d *decoder) decodeImages(l *Lab, n *yaml.Node) []Image {
	items, _ := d.sequence(n, "images")
	var out []Image
	seen := map[string]string{}
	for i, item := range items {
		field := indexPath("images", i)
		if isNull(item) {
			d.errorf(item, field, "expected a mapping, got null")
			continue
		}
		f, ok := d.mapping(item, field, "ref", "pinned", "build")
		if !ok {
			continue
		}
		img := Image{Pos: d.pos(item)}
		rn := f.get("ref")
		if rn == nil {
			d.errorf(f.at("ref"), field+".ref", "ref is required: an image reference such as registry.k8s.io/pause:3.10.2")
			continue
		}
		good := true
		if s, ok := d.str(rn, field+".ref"); !ok {
			good = false
		} else if name, msg := imageName(s); msg != "" {
			d.errorf(rn, field+".ref", "%s", msg)
			good = false
		} else if first, dup := seen[name]; dup {
			d.errorf(rn, field+".ref", "duplicate image %s (also %s)", name, first)
			good = false
		} else {
			seen[name] = field
			img.Name, img.Ref = name, "docker://"+name
		}
		if pn := f.get("pinned"); pn != nil {
			b, ok := d.boolean(pn, field+".pinned")
			good = good && ok
			img.Pinned = b
		}
		if bn := f.get("build"); bn != nil {
			img.Build = d.decodeImageBuild(l, bn, field+".build")
			good = good && img.Build != nil
			// A digest names what a registry serves; a built image's
			// digest is whatever its files make.
			if rn := f.get("ref"); img.Name != "" && strings.Contains(img.Name, "@") {
				d.errorf(rn, field+".ref", "a built image is named by a tag (REPO:TAG), not a digest: the digest is what its files make; drop build: to pull %s", img.Name)
				good = false
			}
		}
		if good {
			out = append(out, img)
		}
	}
	return out
}

// imageName normalizes a docker reference (docker:// optional) as CRI
// does, or says what is wrong with it.
func imageName(s string) (string, string) {
	if s != strings.TrimSpace(s) || s == "" {
		return "", "an image reference must not be empty or have spaces around it"
	}
	for _, t := range transports {
		if t != "docker://" && strings.HasPrefix(s, t) {
			return "", "images are preloaded under a registry name: give a docker reference (registry.k8s.io/pause:3.10.2, optionally docker://…), not " + strings.TrimSuffix(t, "://") + " (copy the image to a registry, or use labbake bundle for air-gapped builds)"
		}
	}
	name, err := ctrstore.NormalizeRef(s)
	if err != nil {
		return "", err.Error()
	}
	return name, ""
}

func (d *decoder) decodeContainerd(top fields) Containerd {
	c := Containerd{Namespace: ctrstore.DefaultNamespace, Root: ctrstore.DefaultRoot, Pos: d.pos(top.node)}
	n := top.get("containerd")
	if n == nil {
		return c
	}
	c.Pos = d.pos(n)
	f, ok := d.mapping(n, "containerd", "namespace", "root")
	if !ok {
		return c
	}
	if v := f.get("namespace"); v != nil {
		if s, ok := d.str(v, "containerd.namespace"); ok {
			if len(s) > maxNamespace || !namespaceRe.MatchString(s) || s == "version" {
				d.errorf(v, "containerd.namespace", "%q is not a containerd namespace (letters and digits joined by '.', '_' or '-', at most %d, not version)", s, maxNamespace)
			} else {
				c.Namespace = s
			}
		}
	}
	if v := f.get("root"); v != nil {
		if s, ok := d.str(v, "containerd.root"); ok {
			if !path.IsAbs(s) || path.Clean(s) != s || s == "/" {
				d.errorf(v, "containerd.root", "%q: want a clean absolute path in the image other than /", s)
			} else {
				c.Root = s
			}
		}
	}
	return c
}

// decodeImageBuild decodes images[i].build: files (artifacts), entrypoint
// and the optional config fields.
func (d *decoder) decodeImageBuild(l *Lab, n *yaml.Node, field string) *ImageBuild {
	f, ok := d.mapping(n, field, "files", "entrypoint", "cmd", "user", "env", "workdir", "ports", "labels")
	if !ok {
		return nil
	}
	b := &ImageBuild{Pos: d.pos(n)}
	good := true
	fn := f.get("files")
	if items, _ := d.sequence(fn, field+".files"); len(items) == 0 {
		if fn == nil || fn.Kind == yaml.SequenceNode {
			d.errorf(f.at("files"), field+".files", "files lists nothing: a built image needs at least one file, given like an artifact ({file: …, dest: …}, {go: …}, {url: …}, {archive: …})")
		}
		good = false
	} else {
		b.Files = d.artifactList(l, fn, field+".files")
		good = good && len(b.Files) == len(items)
	}
	en := f.get("entrypoint")
	if en == nil {
		d.errorf(f.at("entrypoint"), field+".entrypoint", "entrypoint is required: the program the container runs, e.g. [/pause]")
		good = false
	} else if v, ok := d.strList(en, field+".entrypoint"); !ok {
		good = false
	} else if len(v) == 0 || v[0] == "" {
		d.errorf(en, field+".entrypoint", "entrypoint is empty: give the program the container runs, e.g. [/pause]")
		good = false
	} else {
		b.Entrypoint = v
	}
	if cn := f.get("cmd"); cn != nil {
		v, ok := d.strList(cn, field+".cmd")
		b.Cmd, good = v, good && ok
	}
	if un := f.get("user"); un != nil {
		s, ok := d.str(un, field+".user")
		if ok && (s == "" || strings.ContainsAny(s, " \t\n")) {
			d.errorf(un, field+".user", "user %q: want a user (name or number), optionally :group", s)
			ok = false
		}
		b.User, good = s, good && ok
	}
	if en := f.get("env"); en != nil {
		items, _ := d.sequence(en, field+".env")
		v, ok := d.strList(en, field+".env")
		for i, e := range v {
			if k, _, found := strings.Cut(e, "="); !found || k == "" {
				d.errorf(items[i], indexPath(field+".env", i), "%q: want KEY=VALUE", e)
				ok = false
			}
		}
		b.Env, good = v, good && ok
	}
	if wn := f.get("workdir"); wn != nil {
		s, ok := d.str(wn, field+".workdir")
		if ok && (!path.IsAbs(s) || path.Clean(s) != s) {
			d.errorf(wn, field+".workdir", "%q: want a clean absolute path", s)
			ok = false
		}
		b.WorkingDir, good = s, good && ok
	}
	if pn := f.get("ports"); pn != nil {
		items, _ := d.sequence(pn, field+".ports")
		v, ok := d.strList(pn, field+".ports")
		for i, p := range v {
			if msg := ociimage.CheckPort(p); msg != "" {
				d.errorf(items[i], indexPath(field+".ports", i), "%q: %s", p, msg)
				ok = false
			}
		}
		b.ExposedPorts, good = v, good && ok
	}
	if ln := f.get("labels"); ln != nil {
		lf, ok := d.mapping(ln, field+".labels", mapKeys(ln)...)
		if ok {
			b.Labels = map[string]string{}
			for k := range lf.vals {
				v, vok := d.str(lf.vals[k], joinPath(field+".labels", k))
				ok = ok && vok
				b.Labels[k] = v
			}
		}
		good = good && ok
	}
	if !good {
		return nil
	}
	return b
}

// mapKeys are the keys of a mapping node (to accept them all).
func mapKeys(n *yaml.Node) []string {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	var keys []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		keys = append(keys, n.Content[i].Value)
	}
	return keys
}
