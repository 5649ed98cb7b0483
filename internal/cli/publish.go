package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/labbake/labbake/internal/bake"
	"github.com/labbake/labbake/internal/publish"
	"github.com/labbake/labbake/internal/published"
	"github.com/labbake/labbake/internal/recipe"
)

// registryFlags are skopeo's names for how to reach a registry.
type registryFlags struct {
	creds, authFile, certDir string
	tlsVerify                bool
}

func (f *registryFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.creds, "creds", "", "USER[:PASSWORD] for the registry (default: the auth file)")
	fl.StringVar(&f.authFile, "authfile", "", "registry credentials file (default: $REGISTRY_AUTH_FILE, else auth.json in $XDG_RUNTIME_DIR/containers, then ~/.docker/config.json)")
	fl.StringVar(&f.certDir, "cert-dir", "", "directory of ca.crt and client certificates for the registry (default: /etc/containers/certs.d/HOST)")
	fl.BoolVar(&f.tlsVerify, "tls-verify", true, "require HTTPS and verify the registry's certificate")
}

func (g *globals) registryOptions(f *registryFlags) (*publish.Options, error) {
	log, err := g.logger()
	if err != nil {
		return nil, err
	}
	o := &publish.Options{Creds: f.creds, AuthFile: f.authFile, CertDir: f.certDir, TLSVerify: f.tlsVerify, Getenv: g.getenv, Log: log}
	if fd, ok := g.stderr.(*os.File); ok && !g.verbose {
		o.Progress, o.Terminal = g.stderr, term.IsTerminal(int(fd.Fd()))
	}
	return o, nil
}

// publishOptions are publish's flags.
type publishOptions struct {
	all    bool
	to     string
	format string
	rf     registryFlags
}

func newPublishCmd(g *globals) *cobra.Command {
	o := &publishOptions{}
	cmd := &cobra.Command{
		Use:   "publish ROLE... | --all --to REPO[:TAG]",
		Short: "Push baked role images to an OCI registry, as an artifact or a KubeVirt containerDisk",
		Long: `Publish pushes OUT/ROLE.qcow2 with its manifest and SBOM to an OCI registry.

--format artifact (the default) pushes an OCI artifact (artifactType
application/vnd.labbake.disk.qcow2): the qcow2, ROLE.manifest.json and
ROLE.spdx.json as its blobs. --format containerdisk pushes a KubeVirt
containerDisk: an image whose one layer holds /disk/ROLE.qcow2 owned by
107:107. Both are built byte for byte from the outputs, so publishing the same
image again gives the same digest and sends only the manifest.

The image is tagged with TAG (default latest) and with plan-HEX, HEX the first
32 hex digits of the plan digest (containerdisks: plan-HEX-disk), so it can be
found by what it was built from. {role} in REPO is replaced by each role's
name; several roles need it. Seeds, PKI and kubeconfigs are never published.
Credentials and TLS work as skopeo's: --creds, --authfile, --cert-dir,
--tls-verify=false.`,
		Example: `  labbake publish master --to ghcr.io/acme/labbake-master:v1
  labbake publish --all --to ghcr.io/acme/labbake-{role}:v1 --format containerdisk
  labbake publish node --to 127.0.0.1:5000/lab/node --tls-verify=false`,
		RunE: func(cmd *cobra.Command, args []string) error { return runPublish(cmd, g, o, args) },
	}
	cmd.Flags().BoolVar(&o.all, "all", false, "every role named by a node in lab.yaml")
	cmd.Flags().StringVar(&o.to, "to", "", "the repository and tag, e.g. ghcr.io/acme/labbake-{role}:v1")
	cmd.Flags().StringVar(&o.format, "format", string(publish.FormatArtifact), "artifact or containerdisk")
	o.rf.add(cmd)
	return cmd
}

// runPublish checks the flags and the roles, then builds and pushes each
// role's image in turn and records what was pushed.
func runPublish(cmd *cobra.Command, g *globals, o *publishOptions, args []string) error {
	f, err := publish.ParseFormat(o.format)
	if err != nil {
		return &UsageError{fmt.Errorf("--format: %w", err)}
	}
	if o.to == "" {
		return &UsageError{errors.New("--to REPO[:TAG]: where to publish")}
	}
	var lab *recipe.Lab
	if o.all {
		if lab, err = g.loadLab(cmd.Context()); err != nil {
			return err
		}
	}
	names, err := roles(lab, args, o.all)
	if err != nil {
		return err
	}
	if len(names) > 1 && !strings.Contains(o.to, "{role}") {
		return &UsageError{fmt.Errorf("--to %s: several roles need {role} in it (e.g. ghcr.io/acme/labbake-{role}:v1)", o.to)}
	}
	ro, err := g.registryOptions(&o.rf)
	if err != nil {
		return err
	}
	for _, role := range names {
		repo, tag, err := publish.SplitRef(strings.ReplaceAll(o.to, "{role}", role))
		if err != nil {
			return &UsageError{fmt.Errorf("--to: %w", err)}
		}
		if tag == "" {
			tag = "latest"
		}
		if err := refuseSecrets(g.outDir(), role); err != nil {
			return &UsageError{err}
		}
		img, err := publish.Load(g.outDir(), role)
		if err != nil {
			if errors.Is(err, publish.ErrNotBaked) {
				return &UsageError{err}
			}
			return err
		}
		built, err := publish.Build(img, f, version())
		if err != nil {
			return err
		}
		tags := []string{tag, publish.PlanTag(img.Info.PlanDigest, f)}
		pushed, err := publish.Push(cmd.Context(), ro, built, repo, tags)
		if err != nil {
			return err
		}
		if err := recordPublished(g.outDir(), img, f, pushed); err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "%s@%s\t%s\t%s\n", pushed.Repository, pushed.Digest, f, strings.Join(pushed.Tags, ","))
	}
	return nil
}

// refuseSecrets refuses to publish a file of role that is, or resolves to,
// a path under OUT/pki or OUT/seed: those hold the lab's keys.
func refuseSecrets(out, role string) error {
	var secret []string
	for _, d := range []string{bake.PKIDir, bake.SeedDir} {
		p := filepath.Join(out, d)
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		secret = append(secret, p)
	}
	for _, name := range []string{role + ".qcow2", role + ".manifest.json", role + ".spdx.json"} {
		p := filepath.Join(out, name)
		r, err := filepath.EvalSymlinks(p)
		if err != nil {
			continue // missing: Load says so
		}
		if abs, err := filepath.Abs(r); err == nil {
			r = abs
		}
		for _, s := range secret {
			if abs, err := filepath.Abs(s); err == nil {
				s = abs
			}
			if rel, err := filepath.Rel(s, r); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
				return fmt.Errorf("refusing to publish %s: it is under %s, which holds the lab's keys and is never published", p, s)
			}
		}
	}
	return nil
}

func newPullCmd(g *globals) *cobra.Command {
	var (
		policy string
		rf     registryFlags
	)
	cmd := &cobra.Command{
		Use:   "pull REF",
		Short: "Fetch a published role image (artifact or containerDisk) into OUT, verified",
		Long: `Pull fetches an image labbake publish pushed, in either format, by tag or
by digest, and places ROLE.qcow2, ROLE.manifest.json and ROLE.spdx.json in
the output dir, where labbake up finds them: a hypervisor host runs the lab
from pulled images and seeds made locally, without the recipes' inputs.

Every blob is checked against its digest and the qcow2 against the sha256 and
size its manifest gives, all in a temporary directory: a failed pull leaves the
output dir as it was. registries.conf mirrors and the signature policy
(policy.json, --policy) apply as for any image labbake reads.`,
		Example: `  labbake pull ghcr.io/acme/labbake-node:v1
  labbake pull ghcr.io/acme/labbake-master@sha256:… --out /srv/lab/output`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := g.registryOptions(&rf)
			if err != nil {
				return err
			}
			p, err := publish.Pull(cmd.Context(), o, publish.PullOptions{PolicyPath: policy}, args[0], g.outDir())
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s\t%s\t%s\t%s\n", p.Role, p.Format, p.Digest, strings.Join(p.Files, " "))
			return nil
		},
	}
	cmd.Flags().StringVar(&policy, "policy", "", "signature policy file (default: the system's policy.json)")
	rf.add(cmd)
	return cmd
}

// recordPublished notes in OUT/ROLE.published.json what was pushed, for
// the KubeVirt kit: the other format's entry is kept while it describes
// the same qcow2, dropped once the image was rebuilt.
func recordPublished(out string, img *publish.Image, f publish.Format, p *publish.Pushed) error {
	rec, err := published.Read(out, img.Role)
	if err != nil || rec.QCOW2SHA256 != img.Info.Output.SHA256 {
		rec = &published.Record{}
	}
	rec.Role, rec.PlanDigest, rec.QCOW2SHA256 = img.Role, img.Info.PlanDigest, img.Info.Output.SHA256
	entry := &published.Image{Repository: p.Repository, Digest: p.Digest, Tags: p.Tags}
	if f == publish.FormatContainerDisk {
		rec.ContainerDisk = entry
	} else {
		rec.Artifact = entry
	}
	return published.Write(out, rec)
}
