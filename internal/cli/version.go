package cli

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print labbake's version",
		Example: `  labbake version`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(g.stdout, version())
			return nil
		},
	}
}

// version reads the module version and VCS revision stamped by the Go
// toolchain into the binary.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "labbake (unknown version)"
	}
	v, rev := stamped(bi)
	out := "labbake " + v
	if rev != "" {
		out += " " + rev
	}
	return out + " " + bi.GoVersion
}

// toolVersion is labbake's version as one word, as the SBOMs name their
// creator (Tool: labbake-VERSION): the module version ("devel" for a
// build from a work tree), with "+REVISION" when the binary has one.
func toolVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v, rev := stamped(bi)
	if v == "(devel)" {
		v = "devel"
	}
	if rev != "" {
		v += "+" + strings.ReplaceAll(rev, "+", ".")
	}
	return v
}

// stamped returns the module version ("(devel)" when there is none) and the
// short VCS revision ("" when there is none, "+dirty" after it when the
// work tree was modified) that the Go toolchain stamped into bi.
func stamped(bi *debug.BuildInfo) (version, rev string) {
	version = bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	var modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+dirty"
			}
		}
	}
	if rev == "" {
		return version, ""
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return version, rev + modified
}
