package recipe

import (
	"path"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/labbake/labbake/builders/ctrstore"
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
	Pos    Pos
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

func (d *decoder) decodeImages(n *yaml.Node) []Image {
	items, _ := d.sequence(n, "images")
	var out []Image
	seen := map[string]string{}
	for i, item := range items {
		field := indexPath("images", i)
		if isNull(item) {
			d.errorf(item, field, "expected a mapping, got null")
			continue
		}
		f, ok := d.mapping(item, field, "ref", "pinned")
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
