// Command hostname answers every HTTP request with the name of the host it
// runs on (in a Kubernetes pod: the pod's name) and a newline. labbake's
// cluster test runs it behind a Service to see which pod answered.
//
// With -resolve or -get it is the cluster test's probe instead: it looks
// the names up and fetches the URLs (retrying until -wait is over), prints
// what it found, and exits 1 if any failed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", ":8080", "address to listen on")
	var names, urls list
	flag.Var(&names, "resolve", "probe: look this name up (repeatable)")
	flag.Var(&urls, "get", "probe: fetch this URL (repeatable)")
	wait := flag.Duration("wait", time.Minute, "probe: retry each check this long")
	flag.Parse()
	if len(names) > 0 || len(urls) > 0 {
		if !probe(names, urls, *wait) {
			os.Exit(1)
		}
		return
	}
	if err := run(*listen); err != nil {
		fmt.Fprintln(os.Stderr, "hostname:", err)
		os.Exit(1)
	}
}

func run(listen string) error {
	name, err := os.Hostname()
	if err != nil {
		return err
	}
	srv := &http.Server{
		Addr:              listen,
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintln(w, name)
		}),
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
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
}

// list is a repeatable string flag.
type list []string

func (l *list) String() string     { return fmt.Sprint(*l) }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

// probe runs every check, each retried until it passes or wait is over,
// and reports whether all passed.
func probe(names, urls []string, wait time.Duration) bool {
	ok := true
	for _, n := range names {
		ok = retry(wait, "resolve "+n, func(ctx context.Context) (string, error) {
			addrs, err := net.DefaultResolver.LookupHost(ctx, n)
			return strings.Join(addrs, " "), err
		}) && ok
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, u := range urls {
		ok = retry(wait, "get "+u, func(ctx context.Context) (string, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err != nil {
				return "", err
			}
			resp, err := client.Do(req)
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("HTTP %s", resp.Status)
			}
			return strings.TrimSpace(string(b)), err
		}) && ok
	}
	return ok
}

// retry runs check every 2 s until it succeeds or wait is over, and
// prints "ok WHAT: RESULT" or "FAIL WHAT: ERROR".
func retry(wait time.Duration, what string, check func(context.Context) (string, error)) bool {
	deadline := time.Now().Add(wait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		got, err := check(ctx)
		cancel()
		if err == nil {
			fmt.Printf("ok %s: %s\n", what, got)
			return true
		}
		if time.Now().After(deadline) {
			fmt.Printf("FAIL %s: %v\n", what, err)
			return false
		}
		time.Sleep(2 * time.Second)
	}
}
