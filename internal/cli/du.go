package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/labbake/labbake/builders/space"
	"github.com/labbake/labbake/internal/bake"
	"github.com/labbake/labbake/internal/iox"
	"github.com/labbake/labbake/internal/recipe"
)

func newDuCmd(g *globals) *cobra.Command {
	var all, asJSON bool
	cmd := &cobra.Command{
		Use:   "du ROLE... | --all",
		Short: "Show what takes the space in a built image: by stage, directory, package; the largest files",
		Long: `Du reads OUT/ROLE.manifest.json, written by labbake build, and shows what
takes the space in the image's root file system: the bytes of its files'
content (a hardlinked file once; not the blocks, inodes and journal of ext4)
by the build stage they came from (base, layers[N], artifacts[N], images,
overlays[N], units, files, boot …), by directory three levels deep (each file
counts in one: /usr/lib/modules, /usr/local/bin, /var/lib/containerd; a file
higher up in its own directory, like /etc), by the Debian package whose
file list names it ("(no package)" for files a package made, like the
initramfs), and the largest files. Sizes are right-aligned, largest first.`,
		Example: `  labbake du master
  labbake du --all
  labbake du master --json | jq '.[0].dirs[:5]'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var lab *recipe.Lab
			if all {
				var err error
				if lab, err = g.loadLab(cmd.Context()); err != nil {
					return err
				}
			}
			names, err := roles(lab, args, all)
			if err != nil {
				return err
			}
			reports := make([]*space.Report, 0, len(names))
			var images []string
			for _, role := range names {
				m, err := readManifest(g, role)
				if err != nil {
					return err
				}
				reports = append(reports, m.Space)
				images = append(images, fmt.Sprintf("%s (%s, %s)", role, m.Output.File, iox.Bytes(m.Output.Size)))
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(reports)
			}
			for i, r := range reports {
				if i > 0 {
					fmt.Fprintln(g.stdout)
				}
				printSpace(g.stdout, images[i], r)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every role named by a node in lab.yaml")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the manifests' space sections, a JSON array in role order")
	return cmd
}

// readManifest reads OUT/ROLE.manifest.json; it must have a space section.
func readManifest(g *globals, role string) (*bake.Manifest, error) {
	if strings.ContainsAny(role, `/\`) || role == "" || role[0] == '.' {
		return nil, &UsageError{fmt.Errorf("role %q: not a role name", role)}
	}
	path := filepath.Join(g.outDir(), role+".manifest.json")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, &UsageError{fmt.Errorf("%s: %s does not exist: run labbake build %s first", role, path, role)}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", role, err)
	}
	var m bake.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if m.Space == nil {
		return nil, &UsageError{fmt.Errorf("%s: %s has no space section (built by an older labbake): run labbake build %s", role, path, role)}
	}
	return &m, nil
}

// printSpace prints r du-like: sizes right-aligned, then file counts, then
// names; a line for what a cut list leaves out.
func printSpace(w io.Writer, title string, r *space.Report) {
	fmt.Fprintf(w, "%s: %s in %d files\n", title, iox.Bytes(r.Bytes), r.Files)
	section := func(head string, uses []space.Use, rest string) {
		fmt.Fprintf(w, "\n%s\n", head)
		var bytes int64
		var files int
		for _, u := range uses {
			fmt.Fprintf(w, "%10s %7d  %s\n", iox.Bytes(u.Bytes), u.Files, u.Name)
			bytes += u.Bytes
			files += u.Files
		}
		if left := r.Bytes - bytes; rest != "" && (left > 0 || r.Files > files) {
			fmt.Fprintf(w, "%10s %7d  %s\n", iox.Bytes(left), r.Files-files, rest)
		}
	}
	section("by stage", r.Origins, "")
	section(fmt.Sprintf("by directory (%d levels deep)", r.Depth), r.Dirs, "(other directories)")
	if len(r.Packages) > 0 {
		section("by package", r.Packages, "(other packages, and stages without a dpkg database)")
	}
	fmt.Fprintf(w, "\nlargest files\n")
	for _, f := range r.Largest {
		from := f.Origin
		switch f.Package {
		case "":
		case space.NoPackage:
			from += ", no package"
		default:
			from += ", package " + f.Package
		}
		fmt.Fprintf(w, "%10s  %s  (%s)\n", iox.Bytes(f.Bytes), f.Path, from)
	}
}

// spaceSummary is the line labbake build prints under an image: its
// largest directories.
func spaceSummary(r *space.Report, n int) string {
	parts := make([]string, 0, n+1)
	for _, u := range r.Dirs[:min(n, len(r.Dirs))] {
		parts = append(parts, u.Name+" "+iox.Bytes(u.Bytes))
	}
	if len(r.Dirs) > n {
		parts = append(parts, "…")
	}
	return fmt.Sprintf("space: %s in %d files: %s", iox.Bytes(r.Bytes), r.Files, strings.Join(parts, ", "))
}
