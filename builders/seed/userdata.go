package seed

import (
	"encoding/base64"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// userData is the #cloud-config document; field order is output order.
type userData struct {
	Hostname       qstring     `yaml:"hostname"`
	FQDN           qstring     `yaml:"fqdn"`
	ManageEtcHosts bool        `yaml:"manage_etc_hosts"`
	Locale         qstring     `yaml:"locale"`
	Apt            aptConfig   `yaml:"apt"`
	Users          []user      `yaml:"users"`
	DisableRoot    bool        `yaml:"disable_root"`
	SSHDeleteKeys  bool        `yaml:"ssh_deletekeys"`
	SSHGenKeyTypes []string    `yaml:"ssh_genkeytypes"` // the types of HostKeys: see userDataOf
	SSHKeys        sshKeys     `yaml:"ssh_keys"`
	WriteFiles     []writeFile `yaml:"write_files,omitempty"`
}

// aptConfig keeps the image's sources: without it cloud-init rewrites
// sources.list from its template on Debian.
type aptConfig struct {
	PreserveSourcesList bool `yaml:"preserve_sources_list"`
}

type user struct {
	Name              qstring   `yaml:"name"`
	LockPasswd        bool      `yaml:"lock_passwd"`
	SSHAuthorizedKeys []qstring `yaml:"ssh_authorized_keys"`
}

// sshKeys are cloud-init's ssh_keys, one pair per type, in a fixed order.
type sshKeys struct {
	ECDSAPrivate   lstring `yaml:"ecdsa_private,omitempty"`
	ECDSAPublic    qstring `yaml:"ecdsa_public,omitempty"`
	ED25519Private lstring `yaml:"ed25519_private,omitempty"`
	ED25519Public  qstring `yaml:"ed25519_public,omitempty"`
	RSAPrivate     lstring `yaml:"rsa_private,omitempty"`
	RSAPublic      qstring `yaml:"rsa_public,omitempty"`
}

type writeFile struct {
	Path        qstring `yaml:"path"`
	Owner       qstring `yaml:"owner"`
	Permissions qstring `yaml:"permissions"`
	Encoding    qstring `yaml:"encoding"`
	Content     qstring `yaml:"content"`
}

// userDataOf builds the user-data of a valid m. ssh_genkeytypes lists the
// types of the given host keys: cloud-init generates keys only when
// ssh_keys is absent, and its schema refuses an empty list, so naming the
// given types keeps any cloud-init from generating another type.
func userDataOf(m Machine) userData {
	u := userData{
		Hostname:       q(m.Name),
		FQDN:           q(m.FQDN),
		ManageEtcHosts: true,
		Locale:         "C.UTF-8",
		Apt:            aptConfig{PreserveSourcesList: true},
		Users: []user{{
			Name:              "root",
			LockPasswd:        true,
			SSHAuthorizedKeys: qs(trimAll(m.AuthorizedKeys)),
		}},
		DisableRoot:   false,
		SSHDeleteKeys: true,
	}
	for _, typ := range []string{"ecdsa", "ed25519", "rsa"} {
		for _, k := range m.HostKeys {
			if k.Type == typ {
				u.SSHGenKeyTypes = append(u.SSHGenKeyTypes, typ)
			}
		}
	}
	for _, k := range m.HostKeys {
		priv, pub := privateKeyText(k.Private), q(strings.TrimSpace(k.Public))
		switch k.Type {
		case "ecdsa":
			u.SSHKeys.ECDSAPrivate, u.SSHKeys.ECDSAPublic = priv, pub
		case "ed25519":
			u.SSHKeys.ED25519Private, u.SSHKeys.ED25519Public = priv, pub
		case "rsa":
			u.SSHKeys.RSAPrivate, u.SSHKeys.RSAPublic = priv, pub
		}
	}
	u.WriteFiles = append(u.WriteFiles, writeFile{
		Path:        SSHDPolicyPath,
		Owner:       "root:root",
		Permissions: "0600",
		Encoding:    "b64",
		Content:     q(base64.StdEncoding.EncodeToString([]byte(SSHDPolicy))),
	})
	for _, f := range m.Files {
		u.WriteFiles = append(u.WriteFiles, writeFile{
			Path:        q(f.Path),
			Owner:       "root:root",
			Permissions: q(octalMode(uint32(f.Mode))),
			Encoding:    "b64",
			Content:     q(base64.StdEncoding.EncodeToString(f.Content)),
		})
	}
	return u
}

// SSHDPolicyPath and SSHDPolicy: sshd takes keys only. It is a drop-in,
// the first of write_files, written with the other files in cloud-init's first stage, before sshd
// starts, instead of ssh_pwauth: cloud-init applies that in a later stage
// and restarts sshd, refusing connections for a moment after the machine
// first answered.
const (
	SSHDPolicyPath = "/etc/ssh/sshd_config.d/10-labbake.conf"
	SSHDPolicy     = "# written by labbake's seed: root logs in by key only\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
)

// privateKeyText is the key as given, ending in exactly one newline:
// OpenSSH refuses some key files whose last line has no newline.
func privateKeyText(s string) lstring {
	return lstring(strings.TrimRight(s, "\n") + "\n")
}

func trimAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.TrimSpace(s)
	}
	return out
}

// octalMode spells mode as cloud-init's permissions want it: an octal
// string with a leading zero, "0644", "0600", "04755".
func octalMode(mode uint32) string {
	s := strconv.FormatUint(uint64(mode), 8)
	for len(s) < 3 {
		s = "0" + s
	}
	return "0" + s
}

// lstring is a multi-line string written as a YAML literal block (go-yaml
// falls back to double quotes where a literal block cannot hold it).
type lstring string

func (s lstring) IsZero() bool { return s == "" }

func (s lstring) MarshalYAML() (any, error) {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Style: yaml.LiteralStyle, Value: string(s)}, nil
}
