package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labbake/labbake/internal/cli"
)

// TestBridge runs the lab the way the original set-up did, entirely inside
// a network namespace the test makes (root): the bridge qemu0 with the
// kit's gateway address, the kit's dnsmasq configuration and nftables rules
// loaded there, the kit's bridge.conf as /etc/qemu/bridge.conf (an overlay
// of /etc seen only inside), and two machines started by the kit's
// launcher on taps on the bridge (qemu-bridge-helper). They come up with
// their addresses from their seeds, the host reaches them over the bridge
// (ssh with the kit's ssh_config: their lab addresses), they reach each
// other and the bridge address, and the launcher stops them cleanly.
func TestBridge(t *testing.T) {
	if testing.Short() {
		t.Skip("boots two VMs on a bridge in a network namespace (about 4 minutes)")
	}
	requireBootTools(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: a network namespace with a bridge")
	}
	for _, tool := range []string{"unshare", "ip", "dnsmasq", "nft", "socat", "ssh"} {
		if _, err := exec.LookPath(tool); err != nil {
			missingTool(t, "%s not installed", tool)
		}
	}
	if _, err := os.Stat("/usr/lib/qemu/qemu-bridge-helper"); err != nil {
		missingTool(t, "qemu-bridge-helper: %v", err)
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no /dev/net/tun: %v", err)
	}
	if err := exec.Command("unshare", "-n", "true").Run(); err != nil {
		t.Skipf("no network namespaces here: %v", err)
	}
	lab, out, cache := t.TempDir(), t.TempDir(), e2eCache(t)
	write(t, lab, "lab.yaml", "name: e2e-br\nepoch: 1735689600\nnetwork: {mode: bridge}\nnodes:\n"+
		"  - {name: n1, role: master, ip: 172.18.0.5, memory: 1GiB}\n"+
		"  - {name: n2, role: node, ip: 172.18.0.6, memory: 1GiB}\n")
	write(t, lab, "recipes/master.yaml", "base:\n  debian:\n    suite: trixie\n    packages: ["+strings.Join(basePackages, ", ")+"]\ndisk: {size: 3GiB}\n"+networkdFiles)
	write(t, lab, "recipes/node.yaml", "extends: master\n")
	for _, args := range [][]string{{"build", "--all"}, {"kit", "--network", "bridge"}} {
		var so, se bytes.Buffer
		if err := cli.Run(context.Background(), append([]string{"-C", lab, "--cache", cache, "--out", out}, args...), &so, &se, os.Getenv); err != nil {
			t.Fatalf("labbake %s: %v\n%s", strings.Join(args, " "), err, tail(se.String(), 30))
		}
	}
	kit := filepath.Join(out, "kit")
	for _, f := range []string{"bridge.conf", "dnsmasq.conf", "nftables.nft", "run-qemu", "ssh_config", "vm/n1.env"} {
		if _, err := os.Stat(filepath.Join(kit, f)); err != nil {
			t.Fatalf("the kit lacks %s: %v", f, err)
		}
	}
	ns := t.TempDir()
	for _, d := range []string{"up/qemu", "work"} {
		if err := os.MkdirAll(filepath.Join(ns, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bridgeConf, _ := os.ReadFile(filepath.Join(kit, "bridge.conf"))
	if err := os.WriteFile(filepath.Join(ns, "up/qemu/bridge.conf"), bridgeConf, 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`set -eu
ns=%[1]s kit=%[2]s
mount -t overlay overlay -o lowerdir=/etc,upperdir=$ns/up,workdir=$ns/work /etc
ip link set lo up
ip link add qemu0 type bridge
ip addr add 172.18.0.1/16 dev qemu0
ip link set qemu0 up
nft -f $kit/nftables.nft
dnsmasq --conf-file=$kit/dnsmasq.conf --pid-file=$ns/dnsmasq.pid --log-facility=$ns/dnsmasq.log
trap 'for m in n1 n2; do $kit/run-qemu stop $m || true; done; kill $(cat $ns/dnsmasq.pid) 2>/dev/null || true' EXIT
start=$(date +%%s)
for m in n1 n2; do $kit/run-qemu start $m; done
echo "started both in $(( $(date +%%s) - start ))s"
for m in n1 n2; do
	for i in $(seq 1 100); do
		if ssh -F $kit/ssh_config -o ConnectTimeout=5 -o BatchMode=yes $m true 2>/dev/null; then
			echo "$m answered ssh $(( $(date +%%s) - start ))s after start"; break
		fi
		[ $i = 100 ] && { echo "$m never answered ssh"; tail -20 %[3]s/run/$m.log; exit 1; }
		sleep 5
	done
done
ssh -F $kit/ssh_config n1 ip -o -4 addr show lab0
ssh -F $kit/ssh_config n1 ping -c 2 -W 5 172.18.0.6
ssh -F $kit/ssh_config n2 ping -c 2 -W 5 172.18.0.5
ssh -F $kit/ssh_config n1 ping -c 2 -W 5 172.18.0.1
ssh -F $kit/ssh_config n2 ping -c 2 -W 5 172.18.0.1
for m in n1 n2; do LB_STOP_TIMEOUT=120 $kit/run-qemu stop $m; done
grep -c "reboot: Power down" %[3]s/run/n1.log %[3]s/run/n2.log
`, ns, kit, out)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "-m", "-n", "--propagation", "private", "bash", "-c", script)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	start := time.Now()
	err := cmd.Run()
	o := output.String()
	t.Logf("bridge lab (%s):\n%s", time.Since(start).Round(time.Second), o)
	if err != nil {
		t.Fatalf("the bridge lab failed: %v", err)
	}
	// Each machine reaches the other and the bridge: four pings.
	for _, want := range []string{"inet 172.18.0.5/16", "2 received", "run/n1.log:1", "run/n2.log:1"} {
		if strings.Count(o, want) < map[string]int{"2 received": 4}[want] || !strings.Contains(o, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
