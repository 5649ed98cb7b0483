package oci

import (
	"errors"
	"fmt"
	"io"

	"github.com/labbake/labbake/internal/iox"
	"go.podman.io/image/v5/pkg/compression"
)

// OpenLayer opens a layer blob from the store as an uncompressed tar stream
// (gzip, zstd, bzip2 and xz are detected and decompressed; a plain tar is
// returned as is). The caller applies the layers of an image in order with
// OCI whiteout semantics and closes the reader.
func (s *Source) OpenLayer(store Store, layerDigest string) (io.ReadCloser, error) {
	if s.Offline && !store.Has(layerDigest) {
		return nil, fmt.Errorf("oci: layer %s: %w", layerDigest, iox.ErrOffline)
	}
	rc, err := store.Open(layerDigest)
	if err != nil {
		return nil, fmt.Errorf("oci: opening layer %s: %w", layerDigest, err)
	}
	algo, decompress, r, err := compression.DetectCompressionFormat(rc)
	if err != nil {
		_ = rc.Close()
		return nil, fmt.Errorf("oci: reading layer %s: %w", layerDigest, err)
	}
	if decompress == nil {
		return &layerReader{Reader: r, closers: []io.Closer{rc}}, nil
	}
	d, err := decompress(r)
	if err != nil {
		_ = rc.Close()
		return nil, fmt.Errorf("oci: decompressing layer %s (%s): %w", layerDigest, algo.Name(), err)
	}
	return &layerReader{Reader: d, closers: []io.Closer{d, rc}}, nil
}

// layerReader reads a (decompressed) layer and closes everything under it.
type layerReader struct {
	io.Reader
	closers []io.Closer
}

func (l *layerReader) Close() error {
	var errs []error
	for _, c := range l.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
