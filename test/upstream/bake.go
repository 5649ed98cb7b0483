package upstream

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// AllComponents are the names Options.Only accepts, in build order.
var AllComponents = []string{"pause", "hostname", "calico", "headlamp", "runc", "cni", "crictl", "coredns", "etcd", "containerd", "kubernetes"}

// Options says what Bake builds and where.
type Options struct {
	Versions Versions
	// Only limits the build to these components (AllComponents' names);
	// all when empty.
	Only []string
	// OutDir receives bin/NAME/ (binaries), www/ (the served tree),
	// images/REPOSITORY/ (OCI layouts) and work/ (throw-away modules,
	// unpacked Debian packages).
	OutDir string
	// Debian is where runc and cni come from; when nil, Debian's trixie
	// from DefaultDebianMirror with its cache under the Builder's CacheDir.
	Debian *Debian
}

// Output is what Bake made.
type Output struct {
	Results   []*Result
	Published []Published // below WWW
	Images    []*Image
	WWW       string // the tree Serve serves
}

// Bake builds the chosen components with b (runc and cni: takes them from
// Debian), lays the binaries out under OutDir/www and assembles the images
// (CoreDNS, pause, hostname and the Calico and Headlamp stand-ins) as OCI
// layouts. b.WorkDir is set to OutDir/work when empty.
func Bake(ctx context.Context, b *Builder, opt Options) (*Output, error) {
	only := opt.Only
	if len(only) == 0 {
		only = AllComponents
	}
	for _, n := range only {
		if !slices.Contains(AllComponents, n) {
			return nil, fmt.Errorf("unknown component %q (want one of %s)", n, strings.Join(AllComponents, ", "))
		}
	}
	if b.WorkDir == "" {
		b.WorkDir = filepath.Join(opt.OutDir, "work")
	}
	if err := os.MkdirAll(b.WorkDir, 0o755); err != nil {
		return nil, err
	}
	upstream, err := Components(opt.Versions)
	if err != nil {
		return nil, err
	}
	deb := opt.Debian
	if deb == nil {
		deb = &Debian{Suite: "trixie", CacheDir: b.CacheDir, Log: b.Log}
	}
	out := &Output{WWW: filepath.Join(opt.OutDir, "www")}
	for _, name := range AllComponents {
		if !slices.Contains(only, name) {
			continue
		}
		r, err := bakeOne(ctx, b, deb, name, opt, upstream)
		if err != nil {
			return nil, err
		}
		out.Results = append(out.Results, r)
		specs, err := imageSpecs(r)
		if err != nil {
			return nil, err
		}
		for _, spec := range specs {
			dir := filepath.Join(opt.OutDir, "images", filepath.FromSlash(spec.Repository))
			if err := os.RemoveAll(dir); err != nil {
				return nil, err
			}
			img, err := WriteImage(dir, spec)
			if err != nil {
				return nil, err
			}
			out.Images = append(out.Images, img)
		}
	}
	if err := os.RemoveAll(out.WWW); err != nil {
		return nil, err
	}
	if out.Published, err = Layout(out.WWW, out.Results); err != nil {
		return nil, err
	}
	return out, nil
}

// bakeOne builds (or takes from Debian) the component called name.
func bakeOne(ctx context.Context, b *Builder, deb *Debian, name string, opt Options, upstream []Component) (*Result, error) {
	for _, dc := range DebianComponents(opt.Versions) {
		if dc.Name == name {
			return FetchDebian(ctx, deb, dc, b.WorkDir)
		}
	}
	c, err := component(name, opt.Versions, upstream)
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(opt.OutDir, "bin", name)
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, err
	}
	return b.Build(ctx, c, bin)
}

// imageSpecs are the images made of r's binaries.
func imageSpecs(r *Result) ([]ImageSpec, error) {
	one := func(s ImageSpec, err error) ([]ImageSpec, error) {
		if err != nil {
			return nil, err
		}
		return []ImageSpec{s}, nil
	}
	switch r.Component.Name {
	case "coredns":
		return one(CoreDNSImage(r))
	case "pause":
		return one(PauseImage(r))
	case "hostname":
		return one(HostnameImage(r))
	case "headlamp":
		return one(HeadlampImage(r))
	case "calico":
		return CalicoImages(r)
	}
	return nil, nil
}

// component is the Component called name.
func component(name string, v Versions, upstream []Component) (Component, error) {
	switch name {
	case "pause":
		return Program("pause", v.Pause)
	case "hostname":
		return Program("hostname", "v1")
	case "calico":
		return StandIn("calico", v.Calico)
	case "headlamp":
		return StandIn("headlamp", v.Headlamp)
	}
	for _, c := range upstream {
		if c.Name == name {
			return c, nil
		}
	}
	return Component{}, fmt.Errorf("unknown component %q", name)
}
