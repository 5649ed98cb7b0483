package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/labbake/labbake/builders/kit"
	"github.com/labbake/labbake/internal/atomicfile"
	"github.com/labbake/labbake/internal/bake"
	"github.com/labbake/labbake/internal/macaddr"
)

func kitMAC(name string) string { return macaddr.String(name) }

// WriteKit writes the host kit into OUT/kit/ (the systemd user unit, the
// launcher, one env file per machine, ssh_config and, for the bridge, the
// networkd, dnsmasq and nftables files) and points OUT/kubeconfig at the
// API: the control plane's lab address on the bridge, the forwarded port
// on 127.0.0.1 in user mode.
func (s *Lab) WriteKit(ctx context.Context) error {
	files, err := kit.Render(s.Kit)
	if err != nil {
		return err
	}
	dir := filepath.Join(s.OutDir, bake.KitDir)
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(p, content, kit.FileMode(name)); err != nil {
			return err
		}
	}
	return s.writeKubeconfig(ctx)
}

// APIServer is the URL the host reaches kube-apiserver at.
func (s *Lab) APIServer() (string, bool) {
	cp, ok := s.ControlPlane()
	if !ok {
		return "", false
	}
	if s.Mode == kit.ModeUser {
		for _, f := range cp.Forwards {
			if f.GuestPort == APIPort {
				return fmt.Sprintf("https://127.0.0.1:%d", f.HostPort), true
			}
		}
	}
	return fmt.Sprintf("https://%s:%d", cp.IP, APIPort), true
}

func (s *Lab) writeKubeconfig(ctx context.Context) error {
	server, ok := s.APIServer()
	if !ok {
		return nil
	}
	p, err := bake.EnsurePKI(ctx, s.Recipe, bake.SeedOptions{OutDir: s.OutDir, Now: time.Now(), Logger: s.log})
	if err != nil {
		return err
	}
	kc, err := p.AdminKubeconfig(server)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(s.OutDir, bake.Kubeconfig), kc, 0o600)
}

// SSHConfig is OUT/kit/ssh_config.
func (s *Lab) SSHConfig() string { return filepath.Join(s.OutDir, bake.KitDir, "ssh_config") }
