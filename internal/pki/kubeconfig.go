package pki

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// kubeconfig is a client configuration file (clientcmd's v1 Config) with
// one cluster, one user and one context, credentials embedded.
type kubeconfig struct {
	APIVersion     string         `yaml:"apiVersion"`
	Kind           string         `yaml:"kind"`
	Clusters       []namedCluster `yaml:"clusters"`
	Contexts       []namedContext `yaml:"contexts"`
	CurrentContext string         `yaml:"current-context"`
	Users          []namedUser    `yaml:"users"`
	Preferences    struct{}       `yaml:"preferences"`
}

type namedCluster struct {
	Name    string  `yaml:"name"`
	Cluster cluster `yaml:"cluster"`
}

type cluster struct {
	CertificateAuthorityData string `yaml:"certificate-authority-data"`
	Server                   string `yaml:"server"`
}

type namedContext struct {
	Name    string      `yaml:"name"`
	Context kubeContext `yaml:"context"`
}

type kubeContext struct {
	Cluster string `yaml:"cluster"`
	User    string `yaml:"user"`
}

type namedUser struct {
	Name string   `yaml:"name"`
	User authInfo `yaml:"user"`
}

type authInfo struct {
	ClientCertificateData string `yaml:"client-certificate-data"`
	ClientKeyData         string `yaml:"client-key-data"`
}

// renderKubeconfig marshals a kubeconfig for user (a client certificate
// and its key) of the cluster named clusterName at server, trusting caPEM.
// The same arguments give the same bytes.
func renderKubeconfig(clusterName, server string, caPEM []byte, user string, certPEM, keyPEM []byte) ([]byte, error) {
	b64 := base64.StdEncoding.EncodeToString
	ctx := user + "@" + clusterName
	out, err := marshalYAML(kubeconfig{
		APIVersion:     "v1",
		Kind:           "Config",
		Clusters:       []namedCluster{{Name: clusterName, Cluster: cluster{CertificateAuthorityData: b64(caPEM), Server: server}}},
		Contexts:       []namedContext{{Name: ctx, Context: kubeContext{Cluster: clusterName, User: user}}},
		CurrentContext: ctx,
		Users:          []namedUser{{Name: user, User: authInfo{ClientCertificateData: b64(certPEM), ClientKeyData: b64(keyPEM)}}},
	})
	if err != nil {
		return nil, fmt.Errorf("pki: kubeconfig for %s: %w", user, err)
	}
	return out, nil
}

// kubeconfigFor renders the kubeconfig of the leaf with base name leaf
// (its CN is the user name), against server.
func (p *PKI) kubeconfigFor(leaf, server string) ([]byte, error) {
	l, ok := p.leaves[leaf]
	if !ok {
		return nil, fmt.Errorf("pki: no certificate %s", leaf)
	}
	return renderKubeconfig(p.spec.LabName, server, p.cas[kubernetesCA].certPEM, l.cert.Subject.CommonName, l.certPEM, l.keyPEM)
}

// Server is the URL every kubeconfig names: the first control-plane
// machine's kube-apiserver, https://MASTER_IP:6443.
func (p *PKI) Server() string { return p.spec.server() }

// AdminKubeconfig is the administrator's kubeconfig (kubernetes-admin in
// system:masters) for the API server at server; "" means Server().
func (p *PKI) AdminKubeconfig(server string) ([]byte, error) {
	if server == "" {
		server = p.Server()
	}
	if server == "" {
		return nil, errors.New("pki: the lab has no control plane, so no API server for a kubeconfig")
	}
	return p.kubeconfigFor("admin", server)
}

// marshalYAML is one YAML document indented by two spaces, as kubectl
// writes them.
func marshalYAML(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
