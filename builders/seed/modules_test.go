package seed

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

// cloudInitPython is the interpreter the host's cloud-init runs with (its
// #! line), which has cloud-init's modules and the PyYAML it reads with.
func cloudInitPython(t *testing.T) string {
	t.Helper()
	ci := needTool(t, "cloud-init")
	f, err := os.Open(ci)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "#!") {
		missing(t, "%s does not start with a #! line (%v)", ci, err)
	}
	fields := strings.Fields(strings.TrimPrefix(line, "#!"))
	if len(fields) == 0 {
		missing(t, "%s: empty #! line", ci)
	}
	return fields[0]
}

// moduleHarness feeds a user-data to the host cloud-init's own code, merged
// over the system configuration as cloud-init merges it: the users
// normalisation (which user is the default, who gets keys), write_files
// with file writes and chowns recorded instead of done, and cc_ssh's table
// of host key files. It prints what cloud-init would do, as JSON.
const moduleHarness = `
import base64, json, sys, yaml
from cloudinit import util
from cloudinit.config import cc_write_files, cc_ssh
from cloudinit.distros import fetch, ug_util

user_cfg = yaml.safe_load(open(sys.argv[1], "rb"))
try:
    system_cfg = util.read_conf("/etc/cloud/cloud.cfg")
except Exception:
    system_cfg = {}
cfg = util.mergemanydict([user_cfg, system_cfg])
distro = fetch("debian")("debian", cfg.get("system_info", {}), None)
users, _ = ug_util.normalize_users_groups(cfg, distro)
default_user, _ = ug_util.extract_default(users)

written = []
def record_write(filename, content, mode=0o644, omode="wb", **kw):
    if isinstance(content, str):
        content = content.encode()
    written.append({"path": filename, "content": base64.b64encode(content).decode(), "mode": mode, "omode": omode})
owners = []
util.write_file = record_write
util.chownbyname = lambda path, u, g: owners.append(u + ":" + g)
cc_write_files.write_files("write_files", cfg.get("write_files", []), "root:root")

ssh_keys = cfg.get("ssh_keys", {})
host_key_files = {}
for k, v in ssh_keys.items():
    host_key_files[cc_ssh.CONFIG_KEY_TO_FILE[k][0] if k in cc_ssh.CONFIG_KEY_TO_FILE else "unknown key " + k] = v
derived = [p for p, q in cc_ssh.PRIV_TO_PUB.items() if p in ssh_keys and q not in ssh_keys]

json.dump({
    "default_user": default_user,
    "users": users,
    "disable_root": util.get_cfg_option_bool(cfg, "disable_root", True),
    "ssh_pwauth": cfg.get("ssh_pwauth"),
    "ssh_deletekeys": util.get_cfg_option_bool(cfg, "ssh_deletekeys", True),
    "written": written,
    "owners": owners,
    "host_key_files": host_key_files,
    "public_keys_derived": derived,
    "hostname": cfg.get("hostname"),
    "fqdn": cfg.get("fqdn"),
    "locale": cfg.get("locale"),
    "manage_etc_hosts": cfg.get("manage_etc_hosts"),
    "preserve_sources_list": cfg.get("apt", {}).get("preserve_sources_list"),
}, sys.stdout)
`

type moduleResult struct {
	DefaultUser *string `json:"default_user"`
	Users       map[string]struct {
		Default           bool     `json:"default"`
		LockPasswd        bool     `json:"lock_passwd"`
		SSHAuthorizedKeys []string `json:"ssh_authorized_keys"`
	} `json:"users"`
	DisableRoot   bool  `json:"disable_root"`
	SSHPwauth     *bool `json:"ssh_pwauth"`
	SSHDeleteKeys bool  `json:"ssh_deletekeys"`
	Written       []struct {
		Path    string `json:"path"`
		Content string `json:"content"`
		Mode    uint32 `json:"mode"`
		OMode   string `json:"omode"`
	} `json:"written"`
	Owners              []string          `json:"owners"`
	HostKeyFiles        map[string]string `json:"host_key_files"`
	PublicKeysDerived   []string          `json:"public_keys_derived"`
	Hostname            string            `json:"hostname"`
	FQDN                string            `json:"fqdn"`
	Locale              string            `json:"locale"`
	ManageEtcHosts      bool              `json:"manage_etc_hosts"`
	PreserveSourcesList bool              `json:"preserve_sources_list"`
}

// TestCloudInitModules: the host cloud-init's own modules read each
// user-data as meant: root is the only login user, by the given keys, with a
// locked password; no default user; every File is written byte for byte
// with its mode, owned by root; every host key lands in its sshd file and
// no public key is left for cloud-init to derive.
func TestCloudInitModules(t *testing.T) {
	py := cloudInitPython(t)
	if out, err := exec.Command(py, "-c", "import cloudinit.config.cc_write_files, cloudinit.config.cc_ssh, cloudinit.distros.ug_util").CombinedOutput(); err != nil {
		missing(t, "%s cannot import cloud-init's modules: %v\n%s", py, err, out)
	}
	for name, m := range samples(t) {
		t.Run(name, func(t *testing.T) {
			s, err := Render(m)
			if err != nil {
				t.Fatal(err)
			}
			p := writeTemp(t, "user-data", s.UserData)
			out, err := exec.Command(py, "-c", moduleHarness, p).Output()
			if err != nil {
				var stderr []byte
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = ee.Stderr
				}
				t.Fatalf("harness: %v\n%s", err, stderr)
			}
			var r moduleResult
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}

			if r.DefaultUser != nil {
				t.Errorf("cloud-init would create the default user %q", *r.DefaultUser)
			}
			root, ok := r.Users["root"]
			if len(r.Users) != 1 || !ok || root.Default || !root.LockPasswd || !reflect.DeepEqual(root.SSHAuthorizedKeys, trimAll(m.AuthorizedKeys)) {
				t.Errorf("users = %+v, want root alone, password locked, keys %q", r.Users, m.AuthorizedKeys)
			}
			if r.DisableRoot || r.SSHPwauth != nil || !r.SSHDeleteKeys {
				t.Errorf("disable_root %v ssh_pwauth %v ssh_deletekeys %v", r.DisableRoot, r.SSHPwauth, r.SSHDeleteKeys)
			}
			if r.Hostname != m.Name || r.FQDN != m.FQDN || r.Locale != "C.UTF-8" || !r.ManageEtcHosts || !r.PreserveSourcesList {
				t.Errorf("hostname %q fqdn %q locale %q manage_etc_hosts %v preserve_sources_list %v", r.Hostname, r.FQDN, r.Locale, r.ManageEtcHosts, r.PreserveSourcesList)
			}

			files := append([]File{{Path: SSHDPolicyPath, Mode: 0o600, Content: []byte(SSHDPolicy)}}, m.Files...)
			if len(r.Written) != len(files) {
				t.Fatalf("cloud-init writes %d files, want %d", len(r.Written), len(files))
			}
			for i, w := range r.Written {
				f := files[i]
				got, err := base64.StdEncoding.DecodeString(w.Content)
				if err != nil || w.Path != f.Path || string(got) != string(f.Content) || w.Mode != uint32(f.Mode) || w.OMode != "wb" {
					t.Errorf("write %d: %s mode %#o omode %s content %q; want %s mode %#o content %q", i, w.Path, w.Mode, w.OMode, got, f.Path, uint32(f.Mode), f.Content)
				}
			}
			for i, o := range r.Owners {
				if o != "root:root" {
					t.Errorf("file %d owned by %s", i, o)
				}
			}

			want := map[string]string{}
			for _, k := range m.HostKeys {
				want["/etc/ssh/ssh_host_"+k.Type+"_key"] = string(privateKeyText(k.Private))
				want["/etc/ssh/ssh_host_"+k.Type+"_key.pub"] = strings.TrimSpace(k.Public)
			}
			if !reflect.DeepEqual(r.HostKeyFiles, want) {
				t.Errorf("host key files %v, want %v", r.HostKeyFiles, want)
			}
			if len(r.PublicKeysDerived) != 0 {
				t.Errorf("cloud-init would derive public keys for %v", r.PublicKeysDerived)
			}
		})
	}
}
