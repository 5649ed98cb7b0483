package source

import (
	"strings"
	"testing"
)

func TestParseMirror(t *testing.T) {
	tests := []struct {
		in      string
		want    Mirror
		wantErr string
	}{
		{in: "https://dl.k8s.io=https://mirror.internal/k8s", want: Mirror{"https://dl.k8s.io", "https://mirror.internal/k8s"}},
		{in: " HTTPS://DL.k8s.io/=http://Mirror.Internal:8080/k8s/ ", want: Mirror{"https://dl.k8s.io", "http://mirror.internal:8080/k8s"}},
		{in: "https://github.com/etcd-io/etcd/releases=https://m/etcd", want: Mirror{"https://github.com/etcd-io/etcd/releases", "https://m/etcd"}},
		{in: "https://a=https://user:pw@m/x", want: Mirror{"https://a", "https://user:pw@m/x"}},
		{in: "https://dl.k8s.io", wantErr: "want FROM=TO"},
		{in: "=https://m", wantErr: "from: empty URL"},
		{in: "https://a=", wantErr: "to: empty URL"},
		{in: "dl.k8s.io=https://m", wantErr: "not an absolute http or https URL"},
		{in: "ftp://a=https://m", wantErr: "not an absolute http or https URL"},
		{in: "https://a=/local/dir", wantErr: "to: \"/local/dir\" is not an absolute"},
		{in: "https://a?x=1=https://m", wantErr: "has a query"},
		{in: "https://a=https://m#frag", wantErr: "has a fragment"},
		{in: "https://u@a=https://m", wantErr: "user information"},
		{in: "https:///path=https://m", wantErr: "has no host"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMirror(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "mirror ") {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if again, err := ParseMirror(got.String()); err != nil || again != got {
				t.Fatalf("String does not round-trip: %v, %v", again, err)
			}
		})
	}
}

func TestRewrite(t *testing.T) {
	mirrors := []Mirror{
		{"https://dl.k8s.io", "https://m.internal/k8s"},
		{"https://dl.k8s.io/release/v1.31.0", "https://m.internal/pinned/"},
		{"https://github.com/etcd-io/", "http://m.internal/etcd"},
		{"https://ghcr.io/a", "https://m.internal/ghcr-a"},
	}
	tests := []struct{ in, want string }{
		{"https://dl.k8s.io/release/v1.30.0/bin/linux/amd64/kubelet", "https://m.internal/k8s/release/v1.30.0/bin/linux/amd64/kubelet"},
		{"https://dl.k8s.io/release/v1.31.0/bin/linux/amd64/kubelet", "https://m.internal/pinned/bin/linux/amd64/kubelet"}, // longest wins
		{"https://dl.k8s.io/release/v1.31.01/kubelet", "https://m.internal/k8s/release/v1.31.01/kubelet"},                  // segment boundary
		{"https://dl.k8s.io", "https://m.internal/k8s"},
		{"https://dl.k8s.io?x=1", "https://m.internal/k8s?x=1"},
		{"HTTPS://DL.K8S.IO/x", "https://m.internal/k8s/x"},
		{"https://dl.k8s.io.evil.example/x", "https://dl.k8s.io.evil.example/x"},
		{"https://dl.k8s.io:8443/x", "https://dl.k8s.io:8443/x"},
		{"http://dl.k8s.io/x", "http://dl.k8s.io/x"},
		{"https://github.com/etcd-io/etcd/releases/x.tar.gz", "http://m.internal/etcd/etcd/releases/x.tar.gz"},
		{"https://ghcr.io/ab/c", "https://ghcr.io/ab/c"},
		{"https://example.org/f", "https://example.org/f"},
		{"not a url", "not a url"},
	}
	for _, tt := range tests {
		if got := Rewrite(tt.in, mirrors); got != tt.want {
			t.Errorf("Rewrite(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := Rewrite("https://dl.k8s.io/x", nil); got != "https://dl.k8s.io/x" {
		t.Errorf("no mirrors: %q", got)
	}
}
