// Command standin is labbake's stand-in for the Calico and Headlamp programs,
// which cannot be built where only a Go module proxy is reachable. It is one
// binary installed under several names and acts by the name it runs as:
//
//	calicoctl…        `calicoctl version` prints the client version
//	calico-node       stays up until SIGINT or SIGTERM; -felix-live,
//	                  -felix-ready, -bird-live and -bird-ready (the probes)
//	                  exit 0 at once
//	install           (calico/cni's init container) prints what it stands
//	                  for and exits 0: it installs no CNI plugin
//	kube-controllers  stays up until SIGINT or SIGTERM
//	check-status      (kube-controllers' probe) exits 0
//	headlamp-server   answers every HTTP request on :4466 (-port) with a
//	                  line naming itself; other flags are accepted and
//	                  ignored
//
// version is stamped at build time (-X main.version=…).
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

var version = "unknown"

func main() {
	name := filepath.Base(os.Args[0])
	if err := run(name, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

func run(name string, args []string) error {
	switch {
	case strings.HasPrefix(name, "calicoctl"):
		if len(args) == 1 && (args[0] == "version" || args[0] == "--version") {
			fmt.Printf("Client Version:    %s\nGit commit:        labbake-stand-in\n", version)
			return nil
		}
		return fmt.Errorf("labbake stand-in for calicoctl %s: only `calicoctl version` is implemented", version)
	case name == "calico-node":
		for _, a := range args {
			switch strings.TrimLeft(a, "-") {
			case "felix-live", "felix-ready", "bird-live", "bird-ready", "v":
				if a == "-v" {
					fmt.Println(version)
				}
				continue
			default:
				return fmt.Errorf("unknown flag %s", a)
			}
		}
		if len(args) > 0 {
			return nil
		}
		return wait(name)
	case name == "install":
		fmt.Printf("labbake stand-in for calico/cni %s: no CNI plugin installed\n", version)
		return nil
	case name == "kube-controllers":
		return wait(name)
	case name == "check-status":
		return nil
	case name == "headlamp-server":
		return serve(args)
	}
	return fmt.Errorf("labbake stand-in %s: unknown name (calicoctl, calico-node, install, kube-controllers, check-status, headlamp-server)", version)
}

// wait stays up until SIGINT or SIGTERM.
func wait(name string) error {
	fmt.Printf("labbake stand-in for %s %s: running\n", name, version)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

// serve answers HTTP on -port (default 4466) until SIGINT or SIGTERM.
func serve(args []string) error {
	port := "4466"
	for i := 0; i < len(args); i++ {
		a := strings.TrimLeft(args[i], "-")
		if v, ok := strings.CutPrefix(a, "port="); ok {
			port = v
		} else if a == "port" && i+1 < len(args) {
			i++
			port = args[i]
		}
	}
	l, err := net.Listen("tcp", net.JoinHostPort("", port))
	if err != nil {
		return err
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintf(w, "labbake stand-in for headlamp %s\n", version)
		}),
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
