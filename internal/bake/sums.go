package bake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/labbake/labbake/internal/atomicfile"
	"github.com/labbake/labbake/internal/iox"
)

// SumsFile lists the published outputs of the output dir with their
// sha256, in the format sha256sum -c reads.
const SumsFile = "SHA256SUMS"

const manifestSuffix = ".manifest.json"

// writeSums rewrites OUT/SHA256SUMS from what OUT holds, under its own lock
// (OUT/.SHA256SUMS.lock), so that roles built at the same time, each
// rewriting it after its commit, lose none of each other's lines: the last
// to rewrite it sees every commit before its own.
//
// It lists the published outputs of every role that has a manifest:
// ROLE.manifest.json, ROLE.spdx.json when the manifest names it with the
// sha256 it has, and ROLE.qcow2 when its size is the manifest's (its
// sha256 is the manifest's: gigabytes are not read again). Seeds, the PKI,
// the kubeconfig and the kit are deliberately left out: they are the
// machine's own secrets and settings, never published with the images.
func writeSums(ctx context.Context, outDir string, log *slog.Logger) error {
	unlock, err := iox.LockFile(ctx, filepath.Join(outDir, "."+SumsFile+".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	removeStale(outDir, "."+SumsFile)
	lines, err := sumLines(outDir, log)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(outDir, SumsFile), []byte(strings.Join(lines, "")), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", SumsFile, err)
	}
	return nil
}

// sumLines returns the lines of SHA256SUMS for outDir, sorted by file
// name.
func sumLines(outDir string, log *slog.Logger) ([]string, error) {
	entries, err := os.ReadDir(outDir)
	if err != nil {
		return nil, fmt.Errorf("writing %s: %w", SumsFile, err)
	}
	sums := map[string]string{} // file name → hex sha256
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, manifestSuffix) {
			continue
		}
		if err := roleSums(outDir, strings.TrimSuffix(name, manifestSuffix), sums, log); err != nil {
			return nil, fmt.Errorf("writing %s: %w", SumsFile, err)
		}
	}
	names := make([]string, 0, len(sums))
	for n := range sums {
		names = append(names, n)
	}
	slices.Sort(names)
	lines := make([]string, len(names))
	for i, n := range names {
		lines[i] = sums[n] + "  " + n + "\n"
	}
	return lines, nil
}

// roleSums adds the sums of one role's published outputs to sums. A
// manifest that cannot be read as one is left out with a warning, and so is
// an output that does not match it.
func roleSums(outDir, role string, sums map[string]string, log *slog.Logger) error {
	name := role + manifestSuffix
	b, err := os.ReadFile(filepath.Join(outDir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil // replaced or removed since the listing
	}
	if err != nil {
		return err
	}
	if strings.ContainsAny(role, "\n\\") {
		log.Warn("not in "+SumsFile+": a name sha256sum cannot read", "file", name)
		return nil
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		log.Warn("not in "+SumsFile+": not a manifest", "file", name, "err", err)
		return nil
	}
	sums[name] = sha256Hex(b)
	if image := role + ".qcow2"; m.Output.File == image && iox.IsSHA256Hex(m.Output.SHA256) && sizeIs(filepath.Join(outDir, image), m.Output.Size) {
		sums[image] = m.Output.SHA256
	} else {
		log.Warn("not in "+SumsFile+": the image does not match its manifest", "file", image)
	}
	if m.SBOM == nil {
		return nil
	}
	sbomFile := role + ".spdx.json"
	sb, err := os.ReadFile(filepath.Join(outDir, sbomFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if sum := sha256Hex(sb); err == nil && m.SBOM.File == sbomFile && m.SBOM.SHA256 == sum {
		sums[sbomFile] = sum
	} else {
		log.Warn("not in "+SumsFile+": the SBOM does not match its manifest", "file", sbomFile)
	}
	return nil
}

// sizeIs reports whether path is a regular file of size bytes.
func sizeIs(path string, size int64) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Size() == size
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
