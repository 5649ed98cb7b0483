package bake

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/labbake/labbake/builders/boot"
	"github.com/labbake/labbake/builders/disk"
	"github.com/labbake/labbake/builders/qcow2"
	"github.com/labbake/labbake/internal/plan"
)

// TestManifestCompression: output.compressed says whether the clusters
// are compressed, output.compression (only then) with what.
func TestManifestCompression(t *testing.T) {
	for _, tc := range []struct {
		c    qcow2.Compression
		want string
	}{
		{qcow2.NoCompression, `"compressed": false` + "\n"},
		{qcow2.Zlib, `"compressed": true,` + "\n" + `    "compression": "zlib"` + "\n"},
		{qcow2.Zstd, `"compressed": true,` + "\n" + `    "compression": "zstd"` + "\n"},
	} {
		m := newManifest(&plan.Plan{}, &Result{Image: "/out/m.qcow2"}, tc.c, disk.Layout{}, disk.IDs{}, &boot.Result{})
		b, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), tc.want) {
			t.Errorf("%v: manifest %s\nwant output to hold %s", tc.c, b, tc.want)
		}
		if tc.c == qcow2.NoCompression && strings.Contains(string(b), `"compression"`) {
			t.Errorf("uncompressed: manifest has a compression: %s", b)
		}
	}
}
