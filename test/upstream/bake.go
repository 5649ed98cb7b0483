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
var AllComponents = []string{"pause", "hostname", "crictl", "coredns", "etcd", "containerd", "kubernetes"}

// Options says what Bake builds and where.
type Options struct {
	Versions Versions
	// Only limits the build to these components (AllComponents' names);
	// all when empty.
	Only []string
	// OutDir receives bin/NAME/ (binaries), www/ (the served tree),
	// images/REPOSITORY/ (OCI layouts) and work/ (throw-away modules).
	OutDir string
}

// Output is what Bake made.
type Output struct {
	Results   []*Result
	Published []Published // below WWW
	Images    []*Image
	WWW       string // the tree Serve serves
}

// Bake builds the chosen components with b, lays the binaries out under
// OutDir/www and assembles the images (CoreDNS, pause, hostname) as OCI
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
	out := &Output{WWW: filepath.Join(opt.OutDir, "www")}
	for _, name := range AllComponents {
		if !slices.Contains(only, name) {
			continue
		}
		c, err := component(name, opt.Versions, upstream)
		if err != nil {
			return nil, err
		}
		bin := filepath.Join(opt.OutDir, "bin", name)
		if err := os.MkdirAll(bin, 0o755); err != nil {
			return nil, err
		}
		r, err := b.Build(ctx, c, bin)
		if err != nil {
			return nil, err
		}
		out.Results = append(out.Results, r)
		var spec ImageSpec
		switch name {
		case "coredns":
			spec, err = CoreDNSImage(r)
		case "pause":
			spec, err = PauseImage(r)
		case "hostname":
			spec, err = HostnameImage(r)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
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
	if err := os.RemoveAll(out.WWW); err != nil {
		return nil, err
	}
	if out.Published, err = Layout(out.WWW, out.Results); err != nil {
		return nil, err
	}
	return out, nil
}

// component is the Component called name.
func component(name string, v Versions, upstream []Component) (Component, error) {
	switch name {
	case "pause":
		return Program("pause", v.Pause)
	case "hostname":
		return Program("hostname", "v1")
	}
	for _, c := range upstream {
		if c.Name == name {
			return c, nil
		}
	}
	return Component{}, fmt.Errorf("unknown component %q", name)
}
