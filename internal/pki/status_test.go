package pki

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestStatus(t *testing.T) {
	for _, tc := range []struct {
		name           string
		age            time.Duration // how long ago the lab was made
		expiring, gone bool          // leaves
		caExpiring     bool
	}{
		{"new", 0, false, false, false},
		{"leaves within 30 days", 340 * 24 * time.Hour, true, false, false},
		{"leaves expired", 400 * 24 * time.Hour, true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := testSpec()
			spec.Now = time.Now().Add(-tc.age)
			dir, _ := newLab(t, spec)
			infos, err := Status(dir)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, in := range infos {
				got = append(got, in.File)
				if in.IsCA {
					if in.Expiring != tc.caExpiring {
						t.Errorf("%s: expiring %t", in.File, in.Expiring)
					}
					continue
				}
				if in.Expiring != tc.expiring || in.Expired != tc.gone {
					t.Errorf("%s (ends %v): expiring %t expired %t, want %t %t", in.File, in.NotAfter, in.Expiring, in.Expired, tc.expiring, tc.gone)
				}
			}
			var want []string
			for _, c := range caTable {
				want = append(want, c.file)
			}
			for _, l := range leafTable {
				want = append(want, l.file)
			}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("Status lists %v, want %v", got, want)
			}
		})
	}
}

// TestEnsureWarnsOfExpiry: a build with certificates near their end says
// so, and what to do.
func TestEnsureWarnsOfExpiry(t *testing.T) {
	dir, _ := newLab(t, testSpec())
	spec := testSpec()
	spec.Now = now.AddDate(0, 11, 20)
	var logged strings.Builder
	if _, err := Ensure(dir, spec, WithLogger(slog.New(slog.NewTextHandler(&logged, nil)))); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logged.String(), "certificate expires soon; run `labbake pki renew`"); n != len(leafTable) {
		t.Errorf("%d warnings, want one per leaf (%d):\n%s", n, len(leafTable), logged.String())
	}
	if strings.Contains(logged.String(), "ca.crt") {
		t.Errorf("a CA is reported:\n%s", logged.String())
	}
}

func TestStatusDetails(t *testing.T) {
	dir, _ := newLab(t, testSpec())
	infos, err := Status(dir)
	if err != nil {
		t.Fatal(err)
	}
	byFile := map[string]CertInfo{}
	for _, in := range infos {
		byFile[in.File] = in
	}
	api := byFile["apiserver.crt"]
	if api.Subject != "CN=kube-apiserver" || api.Issuer != "CN=kubernetes-ca" || api.IsCA {
		t.Errorf("apiserver.crt: subject %q issuer %q CA %t", api.Subject, api.Issuer, api.IsCA)
	}
	if want := "kubernetes kubernetes.default kubernetes.default.svc kubernetes.default.svc.cluster.local localhost master 10.100.0.1 127.0.0.1 172.18.0.10"; strings.Join(api.SANs(), " ") != want {
		t.Errorf("apiserver.crt SANs %v, want %s", api.SANs(), want)
	}
	if want := now.Add(-backdate).AddDate(1, 0, 0); !api.NotAfter.Equal(want) {
		t.Errorf("apiserver.crt ends %v, want %v", api.NotAfter, want)
	}
	k := byFile["machines/node1/kubelet-client.crt"]
	if k.Subject != "CN=system:node:node1,O=system:nodes" || len(k.SANs()) != 0 {
		t.Errorf("node1 kubelet client: %q %v", k.Subject, k.SANs())
	}
	if e := byFile["etcd/ca.crt"]; !e.IsCA || e.Subject != "CN=etcd-ca" || e.Issuer != e.Subject {
		t.Errorf("etcd/ca.crt: %+v", e)
	}

	// Not a PKI directory; an unreadable certificate.
	if _, err := Status(filepath.Join(dir, "nosuch")); err == nil {
		t.Error("Status of a missing directory")
	}
	writeFile(t, filepath.Join(dir, "junk.crt"), []byte("junk"), 0o644)
	if _, err := Status(dir); err == nil || !strings.Contains(err.Error(), "junk.crt") {
		t.Errorf("Status with junk.crt: %v", err)
	}
	os.Remove(filepath.Join(dir, "junk.crt"))
}
