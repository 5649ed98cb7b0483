package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/labbake/labbake/internal/bake"
	"github.com/labbake/labbake/internal/pki"
)

func newPKICmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pki",
		Short: "Show or renew the lab's certificates",
		Long: `The lab's PKI lives in OUT/pki/ (0700): a Kubernetes CA, an etcd CA and a
front-proxy CA, every component's certificate, one kubelet client and serving
certificate per machine, the service-account key pair, the lab's SSH key
and the machines' SSH host keys. labbake makes it on first need (labbake
seed, labbake build) and reuses it after; it never goes into an image.`,
		Example: `  labbake pki status
  labbake pki renew && labbake seed --all`,
		Args: exactArgs(0),
	}
	var asJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "List every certificate; exit 1 if one expires within 30 days",
		Example: `  labbake pki status
  labbake pki status --json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error { return runPKIStatus(g, asJSON) },
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	renew := &cobra.Command{
		Use:   "renew",
		Short: "Re-issue every leaf certificate with the same CAs, then rewrite the seeds",
		Long: `Renew re-issues every leaf certificate (not the CAs, not the keys of the
service accounts or SSH) and rewrites every machine's seed: the seeds'
instance-ids change, so cloud-init applies the new certificates at the next
boot. Images do not change.`,
		Example: `  labbake pki renew`,
		Args:    exactArgs(0),
		RunE:    func(cmd *cobra.Command, args []string) error { return runPKIRenew(cmd, g) },
	}
	cmd.AddCommand(status, renew)
	return cmd
}

func runPKIStatus(g *globals, asJSON bool) error {
	certs, err := pki.Status(filepath.Join(g.outDir(), bake.PKIDir))
	if err != nil {
		return err
	}
	var expiring []string
	for _, c := range certs {
		if c.Expiring {
			expiring = append(expiring, c.File)
		}
	}
	if asJSON {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(certs); err != nil {
			return err
		}
	} else {
		w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "FILE\tSUBJECT\tSANS\tISSUER\tNOT AFTER")
		for _, c := range certs {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", c.File, c.Subject, strings.Join(c.SANs(), ","), c.Issuer, c.NotAfter.UTC().Format(time.DateOnly))
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	if len(expiring) > 0 {
		return fmt.Errorf("%d certificates expire within 30 days (%s): run labbake pki renew", len(expiring), strings.Join(expiring, ", "))
	}
	return nil
}

func runPKIRenew(cmd *cobra.Command, g *globals) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	lab, err := g.loadLab(cmd.Context())
	if err != nil {
		return err
	}
	spec, err := bake.PKISpec(lab, time.Now())
	if err != nil {
		return err
	}
	dir := filepath.Join(g.outDir(), bake.PKIDir)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return &UsageError{fmt.Errorf("no PKI in %s yet: labbake seed --all makes it", dir)}
	}
	// The seeds are rewritten after the renewal: a seed file that cannot
	// be read fails the verb before any certificate changes.
	if _, err := lab.ReadSeedFiles(nil); err != nil {
		return err
	}
	p, err := pki.Renew(dir, spec, pki.WithLogger(log), pki.WithContext(cmd.Context()))
	if err != nil {
		var de *pki.DamageError
		if errors.As(err, &de) {
			return &bake.InputError{Err: err}
		}
		return err
	}
	fmt.Fprintf(g.stderr, "%d certificates re-issued\n", len(p.Changes()))
	res, err := bake.Seeds(cmd.Context(), lab, nil, g.seedOptions(log))
	if err != nil {
		return err
	}
	for _, r := range res {
		fmt.Fprintf(g.stdout, "%s\t%s\n", r.Path, r.InstanceID)
	}
	return nil
}
