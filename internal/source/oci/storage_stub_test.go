//go:build containers_image_storage_stub

package oci

import (
	"context"
	"errors"
	"testing"
)

func TestPullContainersStorageStubbed(t *testing.T) {
	ref := "containers-storage:docker.io/library/debian:bookworm"
	_, err := testSource(t).Pull(context.Background(), newDirStore(t), ref, "")
	checkErr(t, err, ref, "oci-archive:")
	if !errors.Is(err, ErrUnsupportedTransport) {
		t.Errorf("error %v does not wrap ErrUnsupportedTransport", err)
	}
}
