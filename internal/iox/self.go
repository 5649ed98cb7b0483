package iox

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"
)

// SelfDigest is the hex sha256 of the running program, read once: caches
// whose entries depend on how labbake writes them carry it in their keys.
var SelfDigest = sync.OnceValues(func() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding labbake's own program: %w", err)
	}
	f, err := os.Open(exe)
	if err != nil {
		return "", fmt.Errorf("reading labbake's own program: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading labbake's own program: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
})
