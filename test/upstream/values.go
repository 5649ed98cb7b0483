package upstream

import (
	"bytes"
	"fmt"
)

// labVars names, per component, the key under the shipped lab's vars: whose
// version: it serves.
var labVars = map[string]string{
	"kubernetes": "kubernetes",
	"etcd":       "etcd",
	"containerd": "containerd",
	"runc":       "runc",
	"crictl":     "crictl",
	"cni":        "cni_plugins",
	"calico":     "calico",
}

// labImages names, per image repository, the key under the shipped lab's
// vars.images (or vars.calico.images) that names it.
var labImages = map[string][2]string{
	"pause":                   {"images", "pause"},
	"coredns/coredns":         {"images", "coredns"},
	"headlamp-k8s/headlamp":   {"images", "headlamp"},
	"calico/node":             {"calico", "node"},
	"calico/cni":              {"calico", "cni"},
	"calico/kube-controllers": {"calico", "kube_controllers"},
}

// Values is a values file for the shipped lab (labbake --values FILE, laid
// over lab.yaml's vars:) that points every version the lab takes from
// upstream at what o serves: vars.X.version for each component served as a
// download, the image references of vars.images and vars.calico.images for
// each image built, and vars.debian.snapshot "" — snapshot.debian.org is
// not reachable where this runs, and the recipe's base then comes from
// deb.debian.org. URLs and image names stay upstream's: the --mirror flags
// (Server.Mirrors) and registries.conf (Registry.RegistriesConf) redirect
// them. Components o did not make are left as lab.yaml has them.
func (o *Output) Values() []byte {
	versions := map[string]string{}
	for _, r := range o.Results {
		if key, ok := labVars[r.Component.Name]; ok {
			versions[key] = r.Component.Version
		}
	}
	images := map[string]map[string]string{}
	for _, img := range o.Images {
		if k, ok := labImages[img.Spec.Repository]; ok {
			if images[k[0]] == nil {
				images[k[0]] = map[string]string{}
			}
			images[k[0]][k[1]] = img.Upstream()
		}
	}
	var b bytes.Buffer
	b.WriteString("# labbake test/upstream: the shipped lab pointed at what this run serves.\n")
	b.WriteString("# Use with the --mirror flags and registries.conf of the same run.\n")
	b.WriteString("vars:\n")
	b.WriteString("  debian:\n    # snapshot.debian.org is unreachable here: the current suite from deb.debian.org.\n    snapshot: \"\"\n")
	for _, key := range []string{"kubernetes", "etcd", "containerd", "runc", "crictl", "cni_plugins", "calico"} {
		v, ok := versions[key]
		if !ok && (key != "calico" || images["calico"] == nil) {
			continue
		}
		fmt.Fprintf(&b, "  %s:\n", key)
		if ok {
			fmt.Fprintf(&b, "    version: %q\n", v)
		}
		if key == "calico" && images["calico"] != nil {
			writeImages(&b, "    ", images["calico"])
		}
	}
	if images["images"] != nil {
		writeImages(&b, "  ", images["images"])
	}
	return b.Bytes()
}

// writeImages writes an images: mapping in a fixed key order.
func writeImages(b *bytes.Buffer, indent string, m map[string]string) {
	fmt.Fprintf(b, "%simages:\n", indent)
	for _, k := range []string{"pause", "coredns", "headlamp", "node", "cni", "kube_controllers"} {
		if ref, ok := m[k]; ok {
			fmt.Fprintf(b, "%s  %s: %q\n", indent, k, ref)
		}
	}
}
