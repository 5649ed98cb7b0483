package source

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/labbake/labbake/internal/iox"
)

// serveChecksums serves testdata/checksums, and /big (more than
// MaxChecksumFile) with or without a Content-Length.
func serveChecksums(t *testing.T) *server {
	return newServer(t, func(_ int32, w http.ResponseWriter, r *http.Request) {
		switch path.Base(r.URL.Path) {
		case "big":
			w.Header().Set("Content-Length", "1048577")
			_, _ = w.Write(bytes.Repeat([]byte("#"), MaxChecksumFile+1))
		case "big-chunked":
			for range 17 { // no Content-Length: the server sends it chunked
				_, _ = w.Write(bytes.Repeat([]byte("# comment\n"), 6554))
				w.(http.Flusher).Flush()
			}
		default:
			b, err := os.ReadFile(filepath.Join("testdata/checksums", path.Base(r.URL.Path)))
			if err != nil {
				http.NotFound(w, r)
				return
			}
			_, _ = w.Write(b)
		}
	})
}

func TestChecksum(t *testing.T) {
	sum := func(s string) string { return digestOf([]byte(s)) }
	tests := []struct {
		file, name string
		want       string
		wantErr    []string // URL stands for the file's URL
	}{
		{file: "SHA256SUMS", name: "etcd-v3.5.17-linux-amd64.tar.gz", want: sum("etcd-amd64")},
		{file: "SHA256SUMS", name: "etcd-v3.5.17-linux-arm64.tar.gz", want: sum("etcd-arm64")},
		{file: "SHA256SUMS", name: "dl/v3.5.17/etcd-v3.5.17-linux-arm64.tar.gz", want: sum("etcd-arm64")},
		{file: "SHA256SUMS", name: "etcd-v3.5.17-darwin-amd64.zip", want: sum("etcd-zip")},
		{file: "SHA256SUMS", name: "cni-plugins-linux-amd64-v1.6.0.tgz", want: sum("dot")},
		{file: "SHA256SUMS", name: "bin/linux/arm64/kubectl", want: sum("kubectl-arm64")},
		{file: "SHA256SUMS", name: "kubectl", wantErr: []string{`checksum URL: "kubectl" is ambiguous`, `"bin/linux/amd64/kubectl", "bin/linux/arm64/kubectl"`}},
		{file: "SHA256SUMS", name: "etcd-v3.5.18-linux-amd64.tar.gz", wantErr: []string{
			`checksum URL: no sha256 sum for "etcd-v3.5.18-linux-amd64.tar.gz": the file has "etcd-v3.5.17-linux-amd64.tar.gz", "etcd-v3.5.17-linux-arm64.tar.gz", "etcd-v3.5.17-darwin-amd64.zip", "./cni-plugins-linux-amd64-v1.6.0.tgz"`}},
		{file: "bsd.txt", name: "calico-3.28.2.tar.gz", want: sum("calico")},
		{file: "bsd.txt", name: "name (with parens).tar", want: sum("parens")},
		{file: "bsd.txt", name: "openssl.bin", want: sum("openssl")},
		{file: "bsd.txt", name: "other.tar", wantErr: []string{`no sha256 sum for "other.tar"`, "(and a line that is not a sha256 sum)"}},
		{file: "Fedora-Cloud-41-1.4-x86_64-CHECKSUM", name: "Fedora-Cloud-Base-Generic-41-1.4.x86_64.qcow2", want: sum("fedora")},
		{file: "kubelet.sha256", name: "kubelet", want: sum("lone")},
		{file: "kubelet.sha256", name: "anything", want: sum("lone")},
		{file: "missing", name: "x", wantErr: []string{"checksum URL: 404 Not Found"}},
		{file: "big", name: "x", wantErr: []string{"checksum URL: the file has 1048577 bytes, more than the 1048576 a checksum file may have"}},
		{file: "big-chunked", name: "x", wantErr: []string{"checksum URL: the file has more than the 1048576 bytes a checksum file may have"}},
	}
	srv := serveChecksums(t)
	f := testFetcher(new(bytes.Buffer))
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.name, func(t *testing.T) {
			url := srv.URL + "/releases/" + tt.file
			got, err := f.Checksum(context.Background(), url, tt.name)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("no error, got %s", got)
				}
				for _, s := range tt.wantErr {
					if s = strings.ReplaceAll(s, "URL", url); !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestChecksumMirrorAndOffline(t *testing.T) {
	mirror := serveChecksums(t)
	origin := newServer(t, status(500))
	f := testFetcher(new(bytes.Buffer))
	f.Mirrors = []Mirror{{From: origin.URL + "/etcd-io/etcd/releases/download", To: mirror.URL + "/m"}}
	url := origin.URL + "/etcd-io/etcd/releases/download/v3.5.17/SHA256SUMS"
	got, err := f.Checksum(context.Background(), url, "etcd-v3.5.17-linux-amd64.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	if want := digestOf([]byte("etcd-amd64")); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if origin.reqs.Load() != 0 || mirror.reqs.Load() != 1 || <-mirror.paths != "/m/v3.5.17/SHA256SUMS" {
		t.Errorf("origin saw %d requests, mirror %d", origin.reqs.Load(), mirror.reqs.Load())
	}

	f.Offline = true
	_, err = f.Checksum(context.Background(), url, "etcd-v3.5.17-linux-amd64.tar.gz")
	if !errors.Is(err, iox.ErrOffline) || !strings.HasPrefix(err.Error(), "checksum "+url+": ") {
		t.Errorf("offline: err = %v", err)
	}
	if origin.reqs.Load() != 0 || mirror.reqs.Load() != 1 {
		t.Errorf("offline: origin saw %d requests, mirror %d", origin.reqs.Load(), mirror.reqs.Load())
	}
}

func TestParseChecksums(t *testing.T) {
	h1 := strings.Repeat("ab", 32)
	h2 := strings.Repeat("0f", 32)
	d1, d2 := "sha256:"+h1, "sha256:"+h2
	tests := []struct {
		name string
		in   string
		want Sums
	}{
		{"empty", "", Sums{}},
		{"comments", "# x\n\n   \n", Sums{}},
		{"text and binary", h1 + "  a.tar\n" + h2 + " *b.zip\n", Sums{Sums: []Sum{{"a.tar", d1}, {"b.zip", d2}}}},
		{"one space", h1 + " a.tar\n", Sums{Sums: []Sum{{"a.tar", d1}}}},
		{"tab", h1 + "\ta.tar\n", Sums{Sums: []Sum{{"a.tar", d1}}}},
		{"spaces in name", h1 + "  my file .txt\n", Sums{Sums: []Sum{{"my file .txt", d1}}}},
		{"upper hex", strings.ToUpper(h1) + "  A\n", Sums{Sums: []Sum{{"A", d1}}}},
		{"crlf", h1 + "  a\r\n" + h2 + "  b\r\n", Sums{Sums: []Sum{{"a", d1}, {"b", d2}}}},
		{"no final newline", h1 + "  a", Sums{Sums: []Sum{{"a", d1}}}},
		{"indented", "  " + h1 + "  a\n", Sums{Sums: []Sum{{"a", d1}}}},
		{"escaped", `\` + h1 + `  a\\b\nc` + "\n", Sums{Sums: []Sum{{"a\\b\nc", d1}}}},
		{"bad escape", `\` + h1 + `  a\x` + "\n", Sums{Skipped: 1}},
		{"bsd", "SHA256 (a.tar) = " + h1 + "\n", Sums{Sums: []Sum{{"a.tar", d1}}}},
		{"bsd lower", "sha256 (a.tar) = " + h1 + "\n", Sums{Sums: []Sum{{"a.tar", d1}}}},
		{"openssl", "SHA256(a.tar)= " + h1 + "\n", Sums{Sums: []Sum{{"a.tar", d1}}}},
		{"bsd other algo", "MD5 (a.tar) = 0123456789abcdef0123456789abcdef\n", Sums{Skipped: 1}},
		{"bsd empty name", "SHA256 () = " + h1 + "\n", Sums{Skipped: 1}},
		{"lone", h1 + "\n", Sums{Sums: []Sum{{"", d1}}}},
		{"lone with comment and spaces", "# sum\n" + h1 + "  \n", Sums{Sums: []Sum{{"", d1}}}},
		{"lone from stdin", h1 + "  -\n", Sums{Sums: []Sum{{"", d1}}}},
		{"two lone", h1 + "\n" + h2 + "\n", Sums{Skipped: 2}},
		{"lone among sums", h1 + "\n" + h2 + "  b\n", Sums{Sums: []Sum{{"b", d2}}, Skipped: 1}},
		{"sha512", strings.Repeat("ab", 64) + "  a\n", Sums{Skipped: 1}},
		{"short hex", h1[:63] + "  a\n", Sums{Skipped: 1}},
		{"no name", h1 + "  \n" + h2 + "  b\n", Sums{Sums: []Sum{{"b", d2}}, Skipped: 1}},
		{"html", "<html><body>Not here</body></html>\n", Sums{Skipped: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseChecksums([]byte(tt.in)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLookupErrors(t *testing.T) {
	h := strings.Repeat("ab", 32)
	var many strings.Builder
	for i := range 30 {
		many.WriteString(h + "  file" + string(rune('a'+i%26)) + strings.Repeat("x", i/26) + "\n")
	}
	tests := []struct{ in, name, want string }{
		{"", "a", `no sha256 sum for "a": the file has no sha256 sums`},
		{"<html>\n", "a", `no sha256 sum for "a": the file has no sha256 sums (and a line that is not a sha256 sum)`},
		{many.String(), "z", `"filet" and 10 more`},
		// Same digest under two names is not ambiguous.
		{h + "  amd64/k\n" + h + "  copy/k\n", "k", ""},
	}
	for _, tt := range tests {
		_, err := ParseChecksums([]byte(tt.in)).Lookup(tt.name)
		if tt.want == "" {
			if err != nil {
				t.Errorf("%q: %v", tt.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want %q", tt.in, err, tt.want)
		}
	}
}
