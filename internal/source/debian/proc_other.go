//go:build !linux

package debian

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"time"
)

// runGroup refuses to run: mmdebstrap exists only on Linux.
func runGroup(ctx context.Context, cmd *exec.Cmd, grace time.Duration, privateMounts bool) error {
	return errors.New("mmdebstrap needs Linux")
}

func removeWork(dir string) error { return os.RemoveAll(dir) }
