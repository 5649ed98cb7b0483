// Command labbake bakes a Kubernetes lab into bootable qcow2 images.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/labbake/labbake/internal/cli"
)

func main() {
	// LABBAKE_CPUPROFILE=FILE writes a CPU profile of the run (go tool
	// pprof): for finding where a build's time goes.
	if p := os.Getenv("LABBAKE_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil && pprof.StartCPUProfile(f) == nil {
			code := run()
			pprof.StopCPUProfile()
			f.Close()
			os.Exit(code)
		}
	}
	os.Exit(run())
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, cli.Message(err))
	}
	return cli.ExitCode(err)
}
