package pki

import (
	"fmt"
	"io/fs"
	"slices"
	"strings"
)

// File is one file of a machine's seed, at its path inside the guest.
type File struct {
	Path    string
	Content []byte
	Mode    fs.FileMode
}

// Where the guests keep what the PKI gives them (kubeadm's layout).
const (
	guestPKI     = "/etc/kubernetes/pki"
	guestConf    = "/etc/kubernetes"
	guestKubelet = "/var/lib/kubelet/pki"
)

// guestMode is the mode of every file a seed writes, certificates too
// (kubeadm leaves those 0644): the Kubernetes services and etcd run as
// root and nothing else on the machine needs to read them.
const guestMode fs.FileMode = 0o600

// MachineFiles is what goes into that machine's seed, sorted by path:
// every machine gets the Kubernetes CA certificate, its kubelet's
// kubeconfig and serving certificate and kube-proxy's kubeconfig; a
// control-plane machine also gets the CAs, the API server's certificates,
// the service-account keys, its own etcd member's certificates and the
// control-plane kubeconfigs. Other machines get no CA or service-account
// private key and nothing of etcd. SSH host keys are not files here (see
// HostKey).
func (p *PKI) MachineFiles(name string) ([]File, error) {
	m, ok := p.spec.machine(name)
	if !ok {
		return nil, fmt.Errorf("pki: no machine %q in the lab", name)
	}
	if p.Server() == "" {
		return nil, nil // no control plane, no cluster to join
	}
	var files []File
	add := func(path string, content []byte, mode fs.FileMode) {
		files = append(files, File{Path: path, Content: content, Mode: mode})
	}
	pairTo := func(dir, base, leaf string) {
		pr := p.leaves[leaf]
		add(dir+"/"+base+".crt", pr.certPEM, guestMode)
		add(dir+"/"+base+".key", pr.keyPEM, guestMode)
	}
	conf := func(file, leaf string) error {
		b, err := p.kubeconfigFor(leaf, p.Server())
		if err != nil {
			return err
		}
		add(guestConf+"/"+file, b, guestMode)
		return nil
	}

	add(guestPKI+"/ca.crt", p.cas[kubernetesCA].certPEM, guestMode)
	pairTo(guestKubelet, "kubelet", kubeletServingName(name))
	if err := conf("kubelet.conf", kubeletClientName(name)); err != nil {
		return nil, err
	}
	if err := conf("kube-proxy.conf", "kube-proxy"); err != nil {
		return nil, err
	}
	if m.ControlPlane {
		add(guestPKI+"/ca.key", p.cas[kubernetesCA].keyPEM, guestMode)
		fp := p.cas[frontProxyCA]
		add(guestPKI+"/front-proxy-ca.crt", fp.certPEM, guestMode)
		add(guestPKI+"/front-proxy-ca.key", fp.keyPEM, guestMode)
		for _, leaf := range []string{"apiserver", "apiserver-kubelet-client", "apiserver-etcd-client", "front-proxy-client"} {
			pairTo(guestPKI, leaf, leaf)
		}
		add(guestPKI+"/sa.key", p.saKey, guestMode)
		add(guestPKI+"/sa.pub", p.saPub, guestMode)
		add(guestPKI+"/etcd/ca.crt", p.cas[etcdCA].certPEM, guestMode)
		pairTo(guestPKI+"/etcd", "server", etcdServerName(name))
		pairTo(guestPKI+"/etcd", "peer", etcdPeerName(name))
		for _, c := range []struct{ file, leaf string }{
			{"admin.conf", "admin"},
			{"controller-manager.conf", "controller-manager"},
			{"scheduler.conf", "scheduler"},
		} {
			if err := conf(c.file, c.leaf); err != nil {
				return nil, err
			}
		}
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return files, nil
}
