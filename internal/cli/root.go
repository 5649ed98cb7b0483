package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/labbake/labbake/internal/atomicfile"
	"github.com/labbake/labbake/internal/bake"
	"github.com/labbake/labbake/internal/recipe"
)

// globals are the flags every verb shares.
type globals struct {
	dir       string
	out       string
	cache     string
	verbose   bool
	logFormat string
	mirrors   []string
	values    []string
	stdout    io.Writer
	stderr    io.Writer
	getenv    func(string) string
}

// UsageError is bad usage of the command line: exit code 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// ExitCode maps an error returned by Run to the process exit code: 0 for
// none, 2 for bad input or usage, 1 for everything else.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ue *UsageError
	if errors.As(err, &ue) || bake.IsInputError(err) {
		return 2
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 1
}

// ExitError passes on the exit code of a program labbake ran for the user
// (labbake ssh MACHINE -- COMMAND exits as COMMAND did).
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Run executes the command line args (without the program name) and
// returns the error to report; main prints it and exits with ExitCode.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	cmd := newRootCmd(stdout, stderr, getenv)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err != nil && strings.HasPrefix(err.Error(), "unknown command ") {
		return &UsageError{err}
	}
	return err
}

func newRootCmd(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr, getenv: getenv}
	cmd := &cobra.Command{
		Use:   "labbake",
		Short: "Bake a Kubernetes lab into bootable qcow2 images",
		Long: `labbake bakes a small Kubernetes lab into files: one immutable, bootable
qcow2 image per role (master, node) with everything installed, built from
recipes in a lab directory (lab.yaml, recipes/, units/, overlays/).

Builds are reproducible: the same inputs give the same bytes.`,
		Example: `  labbake build master          # bake output/master.qcow2
  labbake build --all           # bake every role named in lab.yaml
  labbake -C examples/lab plan master --json`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{err} })
	f := cmd.PersistentFlags()
	f.StringVarP(&g.dir, "dir", "C", ".", "lab directory (holds lab.yaml, recipes/, units/, overlays/)")
	f.StringVar(&g.out, "out", "output", "output directory, relative to the lab directory")
	f.StringVar(&g.cache, "cache", defaultCache(getenv), "cache directory")
	f.BoolVarP(&g.verbose, "verbose", "v", false, "log debug details")
	f.StringVar(&g.logFormat, "log-format", "text", "log format on stderr: text or json")
	f.StringArrayVar(&g.values, "values", nil, "a YAML file laid over lab.yaml, deep-merged like Helm's -f (repeatable; later files win)")
	f.StringArrayVar(&g.mirrors, "mirror", nil, "rewrite a URL prefix, FROM=TO (repeatable; also read from $XDG_CONFIG_HOME/labbake/mirrors)")
	cmd.AddCommand(
		newBuildCmd(g),
		newRenderCmd(g),
		newPlanCmd(g),
		newVersionCmd(g),
		newFetchCmd(g),
		newLockCmd(g),
		newCacheCmd(g),
		newBundleCmd(g),
		newTestCmd(g),
		newSeedCmd(g),
		newPKICmd(g),
		newUpCmd(g),
		newDownCmd(g),
		newStatusCmd(g),
		newConsoleCmd(g),
		newSSHCmd(g),
		newResetCmd(g),
		newKitCmd(g),
		newDuCmd(g),
		newPublishCmd(g),
		newPullCmd(g),
	)
	return cmd
}

func defaultCache(getenv func(string) string) string {
	if d := getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "labbake")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".cache", "labbake")
	}
	return filepath.Join(os.TempDir(), "labbake-cache")
}

func (g *globals) logger() (*slog.Logger, error) {
	level := slog.LevelInfo
	if g.verbose {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(g.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(g.stderr, opts)), nil
	}
	return nil, &UsageError{fmt.Errorf("--log-format %q: want text or json", g.logFormat)}
}

// valuesRecord, in the output dir, names the values files the last build
// laid over the lab (one absolute path a line). A verb given no --values
// uses them: the output dir holds the lab as it was built, so make lab
// (which may fall back to the from-source profile) and a later labbake up
// or labbake build agree.
const valuesRecord = "values.list"

// loadLab loads lab.yaml and the --values files over it (or, with none,
// the ones the last build used); rendering stops when ctx is done (Ctrl-C).
func (g *globals) loadLab(ctx context.Context) (*recipe.Lab, error) {
	if len(g.values) == 0 {
		if b, err := os.ReadFile(filepath.Join(g.outDir(), valuesRecord)); err == nil {
			g.values = strings.Fields(string(b))
		}
	}
	return recipe.LoadContext(ctx, g.dir, g.values...)
}

// recordValues writes valuesRecord for the lab just built, or removes it
// when no values file was used.
func (g *globals) recordValues() error {
	p := filepath.Join(g.outDir(), valuesRecord)
	if len(g.values) == 0 {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	var b strings.Builder
	for _, v := range g.values {
		a, err := filepath.Abs(v)
		if err != nil {
			return err
		}
		b.WriteString(a + "\n")
	}
	return atomicfile.WriteFile(p, []byte(b.String()), 0o644)
}

// outDir is --out, relative to the lab dir unless absolute.
func (g *globals) outDir() string {
	if filepath.IsAbs(g.out) {
		return g.out
	}
	return filepath.Join(g.dir, g.out)
}

// roles picks the roles a verb works on: its arguments, or with all every
// role that lab.yaml's nodes name.
func roles(lab *recipe.Lab, args []string, all bool) ([]string, error) {
	switch {
	case all && len(args) > 0:
		return nil, &UsageError{errors.New("give roles or --all, not both")}
	case all:
		r := lab.Roles()
		if len(r) == 0 {
			return nil, &UsageError{errors.New("--all: lab.yaml names no nodes, so there is no role to build")}
		}
		return r, nil
	case len(args) == 0:
		return nil, &UsageError{errors.New("name a role (e.g. master) or give --all")}
	}
	return args, nil
}

// Message is how main prints err: recipe problems one per line in the
// FILE:LINE:COL form editors understand, anything else behind "labbake: ".
func Message(err error) string {
	var el recipe.ErrorList
	if errors.As(err, &el) {
		return el.Error()
	}
	return "labbake: " + err.Error()
}
