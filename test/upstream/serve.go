package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Server serves a Layout tree over plain HTTP on 127.0.0.1.
type Server struct {
	// URL is the base, e.g. http://127.0.0.1:40123; a file at
	// dl.k8s.io/release/… below the root is at URL/dl.k8s.io/release/….
	URL string
	srv *http.Server
	err chan error
}

// Serve serves root on a free port of 127.0.0.1 until Close.
func Serve(root string) (*Server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("serving %s: %w", root, err)
	}
	s := &Server{
		URL: "http://" + l.Addr().String(),
		srv: &http.Server{
			Handler:           http.FileServer(http.Dir(root)),
			ReadHeaderTimeout: 10 * time.Second,
		},
		err: make(chan error, 1),
	}
	go func() { s.err <- s.srv.Serve(l) }()
	return s, nil
}

// Mirrors are the --mirror arguments that send labbake to this server for
// each upstream host Layout writes.
func (s *Server) Mirrors() []string {
	return []string{
		"https://dl.k8s.io=" + s.URL + "/dl.k8s.io",
		"https://github.com=" + s.URL + "/github.com",
	}
}

// Close stops the server.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("stopping %s: %w", s.URL, err)
	}
	if err := <-s.err; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving %s: %w", s.URL, err)
	}
	return nil
}
