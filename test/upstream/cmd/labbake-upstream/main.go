// Command labbake-upstream stands in for dl.k8s.io, GitHub releases,
// registry.k8s.io, quay.io and ghcr.io on a machine that reaches only a Go
// module proxy and a Debian mirror: it builds Kubernetes, containerd,
// crictl, etcd and CoreDNS from the proxy (plus the pause and hostname test
// programs and the Calico and Headlamp stand-ins), takes runc and the CNI
// plugins from Debian's packages, lays them out in upstream's URL layout
// with checksum files, writes OUT/values.yaml for the shipped lab, and with
// -serve serves the tree on 127.0.0.1, pushes the images to a local
// docker-registry and waits for SIGINT or SIGTERM.
//
//	go run ./test/upstream/cmd/labbake-upstream -serve
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/labbake/labbake/test/upstream"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "labbake-upstream:", err)
		os.Exit(1)
	}
}

// report is the summary written to OUT/report.json and standard output.
type report struct {
	GoVersion string               `json:"go_version"`
	Builds    []buildReport        `json:"builds"`
	Files     []upstream.Published `json:"files"`
	Images    []imageReport        `json:"images"`
	BaseURL   string               `json:"base_url,omitempty"`
	Registry  string               `json:"registry,omitempty"`
	Mirrors   []string             `json:"mirrors,omitempty"`
	Values    string               `json:"values"` // OUT/values.yaml
}

type buildReport struct {
	Component string          `json:"component"`
	Module    string          `json:"module"`
	Version   string          `json:"version"`
	Seconds   float64         `json:"seconds"`
	Binaries  []upstream.File `json:"binaries"`
	Drift     []string        `json:"drift,omitempty"`
	// Debian, for runc and cni: the package that really provided the
	// binaries served under Version.
	Debian *upstream.DebPackage `json:"debian,omitempty"`
	// StandIn marks what is not the upstream program (Calico, Headlamp).
	StandIn bool `json:"stand_in,omitempty"`
}

type imageReport struct {
	Upstream  string `json:"upstream"` // the name a lab writes, e.g. quay.io/calico/node:v3.31.3
	Reference string `json:"reference"`
	Manifest  string `json:"manifest"`
	Size      int64  `json:"size"`
}

func run() error {
	def := upstream.DefaultVersions()
	cache, err := upstream.DefaultCacheDir()
	if err != nil {
		return err
	}
	var (
		v     upstream.Versions
		out   = flag.String("out", filepath.Join(os.TempDir(), "labbake-upstream"), "output directory (bin/, www/, images/, work/, registry/)")
		only  = flag.String("only", "", "comma-separated components to build: "+strings.Join(upstream.AllComponents, ","))
		serve = flag.Bool("serve", false, "serve www/ on 127.0.0.1, push the images to a docker-registry and wait for a signal")
	)
	flag.StringVar(&cache, "cache", cache, "module and build cache (GOMODCACHE=CACHE/gomod, GOCACHE=CACHE/gobuild; env LABBAKE_UPSTREAM_CACHE)")
	flag.StringVar(&v.Kubernetes, "kubernetes", def.Kubernetes, "k8s.io/kubernetes version")
	flag.StringVar(&v.Containerd, "containerd", def.Containerd, "github.com/containerd/containerd/v2 version")
	flag.StringVar(&v.Crictl, "crictl", def.Crictl, "sigs.k8s.io/cri-tools version")
	flag.StringVar(&v.Etcd, "etcd", def.Etcd, "go.etcd.io/etcd/server/v3 (and etcdctl, etcdutl) version")
	flag.StringVar(&v.CoreDNS, "coredns", def.CoreDNS, "github.com/coredns/coredns version")
	flag.StringVar(&v.Pause, "pause", def.Pause, "tag of the pause image")
	flag.StringVar(&v.Runc, "runc", def.Runc, "tag runc is served under (the binary is Debian's)")
	flag.StringVar(&v.CNIPlugins, "cni", def.CNIPlugins, "tag the CNI plugins are served under (the binaries are Debian's)")
	flag.StringVar(&v.Calico, "calico", def.Calico, "tag of the Calico stand-ins")
	flag.StringVar(&v.Headlamp, "headlamp", def.Headlamp, "tag of the Headlamp stand-in image")
	debMirror := flag.String("debian-mirror", upstream.DefaultDebianMirror, "Debian archive runc and the CNI plugins come from")
	debSuite := flag.String("debian-suite", "trixie", "Debian suite runc and the CNI plugins come from")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	outDir, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	opt := upstream.Options{Versions: v, OutDir: outDir,
		Debian: &upstream.Debian{Mirror: *debMirror, Suite: *debSuite, CacheDir: cache, Log: log}}
	if *only != "" {
		opt.Only = strings.Split(*only, ",")
	}
	b := &upstream.Builder{CacheDir: cache, Log: log}
	start := time.Now()
	o, err := upstream.Bake(ctx, b, opt)
	if err != nil {
		return err
	}
	log.Info("baked", "seconds", time.Since(start).Round(time.Second).Seconds(), "out", outDir)

	values := filepath.Join(outDir, "values.yaml")
	if err := os.WriteFile(values, o.Values(), 0o644); err != nil {
		return err
	}
	rep := report{Files: o.Published, Values: values}
	for _, r := range o.Results {
		if r.GoVersion != "" {
			rep.GoVersion = r.GoVersion
		}
		rep.Builds = append(rep.Builds, buildReport{
			Component: r.Component.Name, Module: r.Component.Module, Version: r.Component.Version,
			Seconds: r.Elapsed.Round(100 * time.Millisecond).Seconds(), Binaries: r.Files, Drift: r.Drift,
			Debian: r.Debian, StandIn: r.Component.Name == "calico" || r.Component.Name == "headlamp",
		})
	}
	var (
		srv *upstream.Server
		reg *upstream.Registry
	)
	if *serve {
		if srv, err = upstream.Serve(o.WWW); err != nil {
			return err
		}
		defer srv.Close()
		regDir := filepath.Join(outDir, "registry")
		if err := os.MkdirAll(regDir, 0o755); err != nil {
			return err
		}
		if reg, err = upstream.StartRegistry(ctx, regDir); err != nil {
			return err
		}
		defer reg.Close()
		for _, img := range o.Images {
			if err := reg.Push(ctx, img); err != nil {
				return err
			}
		}
		rep.BaseURL, rep.Registry, rep.Mirrors = srv.URL, reg.Host, srv.Mirrors()
		if err := os.WriteFile(filepath.Join(outDir, "registries.conf"), []byte(reg.RegistriesConf()), 0o644); err != nil {
			return err
		}
	}
	for _, img := range o.Images {
		host := img.Spec.Registry
		if reg != nil {
			host = reg.Host
		}
		rep.Images = append(rep.Images, imageReport{Upstream: img.Upstream(), Reference: img.Reference(host), Manifest: img.Manifest.String(), Size: img.Size})
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(outDir, "report.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Printf("%s\n", js)
	if !*serve {
		return nil
	}
	fmt.Printf("serving %s at %s, registry at %s (CONTAINERS_REGISTRIES_CONF=%s); labbake --values %s --mirror %s\n",
		o.WWW, srv.URL, reg.Host, filepath.Join(outDir, "registries.conf"), values, strings.Join(srv.Mirrors(), " --mirror "))
	<-ctx.Done()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
