package iox

import (
	_ "crypto/sha256" // go-digest needs the hash registered
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
)

var (
	// ErrOffline is wrapped by every error of an input that is not in the
	// cache when the network may not be used.
	ErrOffline = errors.New("not available offline")
	// ErrDigestMismatch is wrapped by every error of content that does not
	// hash to the digest it was asked or pinned for.
	ErrDigestMismatch = errors.New("digest mismatch")
)

// maxShown is how much of an untrusted digest string an error quotes.
const maxShown = 100

// ParseDigest parses a content digest as labbake stores and pins them:
// "sha256:" and 64 lowercase hex digits.
func ParseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err == nil && d.Algorithm() != digest.SHA256 {
		err = fmt.Errorf("algorithm %s", d.Algorithm())
	}
	if err != nil {
		return "", fmt.Errorf("invalid digest %.*q: want sha256:<64 lowercase hex digits>", maxShown, s)
	}
	return d, nil
}

// IsSHA256Hex reports whether s is what ParseDigest takes after "sha256:":
// 64 lowercase hex digits, as manifests give a file's sha256.
func IsSHA256Hex(s string) bool {
	_, err := ParseDigest(string(digest.SHA256) + ":" + s)
	return err == nil
}

// DigestBytes is the sha256 digest of b.
func DigestBytes(b []byte) string {
	return digest.FromBytes(b).String()
}

// DigestOf is the digest of what a sha256 hash has summed.
func DigestOf(sum []byte) string {
	return digest.NewDigestFromBytes(digest.SHA256, sum).String()
}
