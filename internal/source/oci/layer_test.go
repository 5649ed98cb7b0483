package oci

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/labbake/labbake/internal/iox"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func TestOpenLayer(t *testing.T) {
	raw := tarBytes(t, lowerLayer())
	var zst bytes.Buffer
	zw, err := zstd.NewWriter(&zst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	store := newDirStore(t)
	src := testSource(t)
	for name, blob := range map[string][]byte{
		"plain": raw,
		"gzip":  gzipBytes(t, raw),
		"zstd":  zst.Bytes(),
	} {
		t.Run(name, func(t *testing.T) {
			d, _, err := store.Put(context.Background(), bytes.NewReader(blob), "")
			if err != nil {
				t.Fatal(err)
			}
			rc, err := src.OpenLayer(store, d)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			if err := rc.Close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, raw) {
				t.Errorf("%s layer: read %d bytes that differ from the %d-byte tar", name, len(got), len(raw))
			}
		})
	}

	missing := "sha256:" + string(bytes.Repeat([]byte("0"), 64))
	_, err = src.OpenLayer(store, missing)
	checkErr(t, err, missing)
	_, err = offlineSource(t).OpenLayer(store, missing)
	checkErr(t, err, missing)
	if !errors.Is(err, iox.ErrOffline) {
		t.Errorf("error %v does not wrap iox.ErrOffline", err)
	}
}
