// Package cli is labbake's command line: one file per verb (newXxxCmd plus
// its run function), cobra for parsing, no package-level state. It loads the
// lab (internal/recipe), resolves plans (internal/plan) and runs builds
// (internal/bake); results go to stdout, logs (log/slog) to stderr.
// cmd/labbake only calls Run and maps the error with ExitCode.
package cli
