package source

import (
	"fmt"
	"net/url"
	"strings"
)

// Mirror rewrites URLs that start with From to start with To instead. Both
// are absolute http or https URLs without a query or fragment; From matches
// on a path-segment boundary, so https://dl.k8s.io matches
// https://dl.k8s.io/release/… but not https://dl.k8s.io.example/….
type Mirror struct{ From, To string }

// String formats m as FROM=TO, the form ParseMirror reads.
func (m Mirror) String() string { return m.From + "=" + m.To }

// ParseMirror reads a mirror given as FROM=TO, for example
// "https://dl.k8s.io=https://mirror.internal/k8s". Scheme and host are
// lowercased and a trailing slash is dropped from both sides.
func ParseMirror(s string) (Mirror, error) {
	from, to, ok := strings.Cut(strings.TrimSpace(s), "=")
	if !ok {
		return Mirror{}, fmt.Errorf("mirror %q: want FROM=TO, e.g. https://dl.k8s.io=https://mirror.internal/k8s", s)
	}
	f, err := mirrorURL(from, false)
	if err != nil {
		return Mirror{}, fmt.Errorf("mirror %q: from: %w", s, err)
	}
	t, err := mirrorURL(to, true)
	if err != nil {
		return Mirror{}, fmt.Errorf("mirror %q: to: %w", s, err)
	}
	return Mirror{From: f, To: t}, nil
}

// mirrorURL checks and normalizes one side of a mirror.
func mirrorURL(s string, userinfo bool) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("empty URL")
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme != "http" && scheme != "https":
		return "", fmt.Errorf("%q is not an absolute http or https URL", s)
	case u.Opaque != "" || u.Host == "":
		return "", fmt.Errorf("%q has no host", s)
	case u.RawQuery != "" || u.ForceQuery:
		return "", fmt.Errorf("%q has a query: a mirror is a URL prefix", s)
	case u.Fragment != "":
		return "", fmt.Errorf("%q has a fragment: a mirror is a URL prefix", s)
	case u.User != nil && !userinfo:
		return "", fmt.Errorf("%q has user information: only the mirror side may", s)
	}
	var b strings.Builder
	b.WriteString(scheme + "://")
	if u.User != nil {
		b.WriteString(u.User.String() + "@")
	}
	b.WriteString(strings.ToLower(u.Host))
	b.WriteString(strings.TrimRight(u.EscapedPath(), "/"))
	return b.String(), nil
}

// Rewrite returns url with the From prefix of the longest matching mirror
// replaced by its To, or url itself when no mirror matches. Scheme and host
// match without regard to case; the path matches exactly, on a
// path-segment boundary.
func Rewrite(url string, mirrors []Mirror) string {
	best, bestLen, rest := -1, -1, ""
	for i, m := range mirrors {
		from := strings.TrimRight(m.From, "/")
		r, ok := cutPrefix(url, from)
		if ok && len(from) > bestLen {
			best, bestLen, rest = i, len(from), r
		}
	}
	if best < 0 {
		return url
	}
	return strings.TrimRight(mirrors[best].To, "/") + rest
}

// cutPrefix reports whether s starts with prefix on a path-segment boundary
// and returns the rest of s. The origin (scheme://host) compares without
// regard to case.
func cutPrefix(s, prefix string) (string, bool) {
	po, pp := splitOrigin(prefix)
	so, sp := splitOrigin(s)
	if po == "" || !strings.EqualFold(po, so) || !strings.HasPrefix(sp, pp) {
		return "", false
	}
	rest := sp[len(pp):]
	if rest != "" && !strings.ContainsRune("/?#", rune(rest[0])) {
		return "", false
	}
	return rest, true
}

// splitOrigin splits an absolute URL into scheme://host and the rest (path,
// query, fragment). It returns "" for the origin of a string that is not
// an absolute URL.
func splitOrigin(s string) (origin, rest string) {
	i := strings.Index(s, "://")
	if i <= 0 {
		return "", s
	}
	j := strings.IndexAny(s[i+3:], "/?#")
	if j < 0 {
		return s, ""
	}
	return s[:i+3+j], s[i+3+j:]
}
