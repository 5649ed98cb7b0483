package source

import (
	"context"
	"errors"
	"net"
	"net/url"
	"sync"
	"time"
)

// ErrUnreachable marks an input whose host does not even resolve from this
// machine: no retry can help, and the user must say where else to get it.
var ErrUnreachable = errors.New("unreachable from this machine")

// UnreachableError is an input's host that does not resolve: it wraps
// ErrUnreachable and names the host.
type UnreachableError struct {
	Host string
}

func (e *UnreachableError) Error() string {
	return e.Host + ": " + ErrUnreachable.Error() + " (the name does not resolve)"
}

// Unwrap makes errors.Is(err, ErrUnreachable) hold.
func (e *UnreachableError) Unwrap() error { return ErrUnreachable }

// Reach remembers which hosts did not resolve, so that the many inputs of
// one unreachable host fail at once instead of each retrying. The zero
// value is ready; it is safe for concurrent use.
type Reach struct {
	mu   sync.Mutex
	dead map[string]error
}

// lookupTimeout bounds one DNS lookup of Check.
const lookupTimeout = 5 * time.Second

// Check resolves rawURL's host once (remembered for the process): a host
// that does not exist gives an error wrapping ErrUnreachable, anything
// else (an address, a temporary DNS failure) nil, for the request itself
// to try.
func (r *Reach) Check(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Hostname() == "" || u.Scheme == "file" {
		return nil
	}
	host := u.Hostname()
	r.mu.Lock()
	if err, ok := r.dead[host]; ok {
		r.mu.Unlock()
		return err
	}
	r.mu.Unlock()
	if net.ParseIP(host) != nil {
		return nil
	}
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	_, lerr := net.DefaultResolver.LookupHost(lctx, host)
	var de *net.DNSError
	if lerr == nil || !errors.As(lerr, &de) || !de.IsNotFound {
		return nil
	}
	err = &UnreachableError{Host: host}
	r.mu.Lock()
	if r.dead == nil {
		r.dead = map[string]error{}
	}
	r.dead[host] = err
	r.mu.Unlock()
	return err
}
