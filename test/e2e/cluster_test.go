package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.podman.io/image/v5/pkg/sysregistriesv2"

	"github.com/labbake/labbake/internal/cli"
	"github.com/labbake/labbake/internal/recipe"
	"github.com/labbake/labbake/test/upstream"
)

// The cluster test's bounds under TCG on 2 cores (measured: both nodes
// Ready about 5 minutes after up, the probe pod done 2 minutes later).
const (
	clusterReadyTimeout = 15 * time.Minute
	clusterProbeTimeout = 8 * time.Minute
)

// clusterValues is laid over the from-source profile and the values
// upstream.Output.Values writes: the test's own image preloaded like a
// user's workload, and Calico's stand-in images for checkCalico.
const clusterValues = `vars:
  extra_images:
    - registry.k8s.io/labbake/hostname:v1
    # checkCalico applies Calico's add-on to this cluster: its images
    # must be there too.
    - quay.io/calico/node:v3.31.3
    - quay.io/calico/cni:v3.31.3
    - quay.io/calico/kube-controllers:v3.31.3
`

// calicoValues bakes the master image with the default CNI.
const calicoValues = `network:
  cni: calico
`

// clusterWorkload: a web server on the master behind a Service, and a Job
// on node-one that resolves the API's name through the cluster DNS and
// fetches the Service (so CoreDNS, kube-proxy and the routes between the
// nodes' pod subnets all work). imagePullPolicy Never: the image must be
// the preloaded one.
const clusterWorkload = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeSelector: {kubernetes.io/hostname: master}
      tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]
      containers:
        - name: web
          image: registry.k8s.io/labbake/hostname:v1
          imagePullPolicy: Never
          ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: probe, namespace: default}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      nodeSelector: {kubernetes.io/hostname: node-one}
      containers:
        - name: probe
          image: registry.k8s.io/labbake/hostname:v1
          imagePullPolicy: Never
          args: [-resolve, kubernetes.default.svc.cluster.local, -get, "http://web.default.svc.cluster.local/", -wait, 4m]
`

// TestCluster bakes the shipped lab, unedited, with its from-source
// profile (values/from-source.yaml: Kubernetes, containerd, crictl, etcd and
// CoreDNS built by labbake from the Go module proxy, runc, the CNI plugins
// and the pause program from Debian, the bridge CNI) and boots master and
// node-one with labbake up (user mode, restricted: no route off the host,
// TCG). test/upstream serves only what is not the lab's: the test's own
// workload image and stand-ins for Calico, which cannot be fetched or built
// here (checkCalico). It checks: both nodes Ready; the API server is the
// version the profile built, stamped like a release; crictl images on each
// lists every baked image; the add-on unit succeeded; a pod on node-one,
// from a preloaded image, resolves kubernetes.default through 10.100.0.10
// (the CoreDNS built from source) and reaches a Service backed by a pod on
// the master; the registry saw no request once the images were baked.
//
// TestMain starts building the profile's Go programs into the shared
// cache (labbake fetch; about 15 minutes cold on 2 cores, seconds warm:
// LABBAKE_E2E_CACHE) while the other tests boot their VMs; this test
// waits for it, bakes the lab's Debian base (about 90 s) and boots two
// VMs.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Kubernetes from source and boots a two-machine cluster")
	}
	requireBootTools(t)
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		if os.Getenv("LABBAKE_REQUIRE_TOOLS") == "1" {
			t.Fatal("kubectl not installed")
		}
		t.Skip("kubectl not installed")
	}
	// Last: the package's other tests boot their VMs while TestMain's
	// fetch compiles the profile's programs, instead of after it.
	t.Parallel()
	ctx := context.Background()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}

	// The profile's programs built, the stand-ins served.
	start := time.Now()
	ups, values := serveUpstream(t, ctx)
	t.Logf("from-source programs built and stand-ins served in %s (waited here)", time.Since(start).Round(time.Second))

	dir := t.TempDir()
	write(t, dir, "values.yaml", values)
	write(t, dir, "test.yaml", clusterValues)
	out := filepath.Join(dir, "out")
	// t.Setenv refuses a parallel test; this one runs alone, last.
	prev, had := os.LookupEnv("CONTAINERS_REGISTRIES_CONF")
	os.Setenv("CONTAINERS_REGISTRIES_CONF", ups.registriesConf)
	// containers/image caches registries.conf by path, not by the
	// environment: the package's other tests have loaded it already.
	sysregistriesv2.InvalidateCache()
	t.Cleanup(func() {
		if had {
			os.Setenv("CONTAINERS_REGISTRIES_CONF", prev)
		} else {
			os.Unsetenv("CONTAINERS_REGISTRIES_CONF")
		}
		sysregistriesv2.InvalidateCache()
	})
	global := []string{"-C", repo, "--cache", e2eCache(t), "--out", out,
		"--values", filepath.Join(repo, fromSourceValues),
		"--values", filepath.Join(dir, "values.yaml"), "--values", filepath.Join(dir, "test.yaml")}
	for _, m := range ups.srv.Mirrors() {
		global = append(global, "--mirror", m)
	}
	run := func(args ...string) (string, string, error) {
		var so, se bytes.Buffer
		err := cli.Run(ctx, append(append([]string{}, global...), args...), &so, &se, os.Getenv)
		return so.String(), se.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		so, se, err := run(args...)
		if err != nil {
			t.Fatalf("labbake %s: %v\n%s\n%s", strings.Join(args, " "), err, so, tail(se, 30))
		}
		return so
	}
	machine := []string{"--network", "user"}
	t.Cleanup(func() { run(append([]string{"down", "--timeout", "20s"}, machine...)...) })

	start = time.Now()
	baked := must("build", "--all")
	t.Logf("baked in %s:\n%s", time.Since(start).Round(time.Second), baked)
	pulls := registryGets(ups.reg.Log())
	sameImagesForOtherLab(t, ctx, dir, global, out)

	start = time.Now()
	must(append([]string{"up", "--restrict", "--accel", "tcg", "master", "node-one"}, machine...)...)
	kubeconfig := filepath.Join(out, "kubeconfig")
	k := func(timeout time.Duration, args ...string) (string, error) {
		c, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		cmd := exec.CommandContext(c, kubectl, append([]string{"--kubeconfig", kubeconfig, "--request-timeout", "20s"}, args...)...)
		var b bytes.Buffer
		cmd.Stdout, cmd.Stderr = &b, &b
		err := cmd.Run()
		return b.String(), err
	}
	ssh := func(name string, cmd string) (string, error) {
		so, se, err := run(append(append([]string{"ssh"}, machine...), name, "--", cmd)...)
		return so + se, err
	}
	consoles := func() string {
		var b strings.Builder
		for _, n := range []string{"master", "node-one"} {
			log, _ := os.ReadFile(filepath.Join(out, "run", n+".log"))
			fmt.Fprintf(&b, "--- %s console:\n%s\n", n, tail(string(log), 15))
			if so, err := ssh(n, "systemctl --failed --no-legend; journalctl -b -p warning --no-pager | tail -n 20"); err == nil {
				fmt.Fprintf(&b, "--- %s failed units and warnings:\n%s\n", n, so)
			}
		}
		return b.String()
	}

	// Both nodes Ready.
	deadline := time.Now().Add(clusterReadyTimeout)
	for {
		so, err := k(time.Minute, "get", "nodes", "-o", "json")
		if err == nil && readyNodes(so) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the nodes were not Ready %s after up: %v\n%s\n%s", clusterReadyTimeout, err, tail(so, 20), consoles())
		}
		time.Sleep(10 * time.Second)
	}
	t.Logf("both nodes Ready %s after up", time.Since(start).Round(time.Second))

	// The control plane is the profile's build, stamped as a release.
	if so, err := k(time.Minute, "get", "--raw", "/version"); err != nil {
		t.Errorf("kubectl get --raw /version: %v\n%s", err, so)
	} else {
		var sv struct{ GitVersion, BuildDate, GoVersion string }
		if err := json.Unmarshal([]byte(so), &sv); err != nil {
			t.Errorf("kubectl get --raw /version: %v\n%s", err, so)
		}
		t.Logf("the API server: %s", strings.Join(strings.Fields(so), " "))
		if sv.GitVersion != profileVersion("kubernetes", "version") ||
			sv.BuildDate != profileVersion("kubernetes", "build_date") || sv.GoVersion != profileVersion("go", "toolchain") {
			t.Errorf("the API server is %+v, want the from-source build of lab.yaml's version", sv)
		}
	}

	// Every baked image is in containerd's store at first boot.
	for _, role := range []struct{ node, manifest string }{{"master", "master"}, {"node-one", "node"}} {
		so, err := ssh(role.node, "crictl --timeout 30s images --no-trunc")
		if err != nil {
			t.Fatalf("crictl images on %s: %v\n%s", role.node, err, so)
		}
		for _, ref := range manifestImages(t, filepath.Join(out, role.manifest+".manifest.json")) {
			name, tag, _ := strings.Cut(ref[strings.LastIndex(ref, "/")+1:], ":")
			repo := ref[:strings.LastIndex(ref, "/")+1] + name
			if !containsFields(so, repo, tag) {
				t.Errorf("crictl images on %s lacks %s:\n%s", role.node, ref, so)
			}
		}
	}
	if so, err := ssh("master", "systemctl show -p ActiveState -p Result lab-addons.service"); err != nil ||
		!strings.Contains(so, "ActiveState=active") || !strings.Contains(so, "Result=success") {
		t.Errorf("lab-addons.service on the master: %v\n%s", err, so)
	}

	// A pod on node-one reaches the cluster DNS and a pod on the master.
	if err := os.WriteFile(filepath.Join(dir, "workload.yaml"), []byte(clusterWorkload), 0o644); err != nil {
		t.Fatal(err)
	}
	if so, err := k(2*time.Minute, "apply", "-f", filepath.Join(dir, "workload.yaml")); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, so)
	}
	start = time.Now()
	deadline = time.Now().Add(clusterProbeTimeout)
	for {
		so, _ := k(time.Minute, "get", "job", "probe", "-o", "jsonpath={.status.succeeded}/{.status.failed}")
		if so == "1/" {
			break
		}
		if strings.HasSuffix(so, "/1") || time.Now().After(deadline) {
			pods, _ := k(time.Minute, "get", "pods", "-A", "-o", "wide")
			events, _ := k(time.Minute, "get", "events", "-A", "--sort-by=.lastTimestamp")
			logs, _ := k(time.Minute, "logs", "job/probe")
			t.Fatalf("the probe job did not succeed (%q) within %s\nlogs:\n%s\npods:\n%s\nevents:\n%s\n%s",
				so, clusterProbeTimeout, logs, pods, tail(events, 30), consoles())
		}
		time.Sleep(10 * time.Second)
	}
	logs, err := k(time.Minute, "logs", "job/probe")
	t.Logf("probe succeeded %s after apply:\n%s", time.Since(start).Round(time.Second), logs)
	if err != nil || !strings.Contains(logs, "ok resolve kubernetes.default.svc.cluster.local: 10.100.0.1") ||
		!strings.Contains(logs, "ok get http://web.default.svc.cluster.local/: web-") {
		t.Errorf("probe's logs: %v\n%s", err, logs)
	}

	checkCalico(t, ctx, dir, global, k)

	// Nothing was pulled: no machine can reach the host (user mode,
	// restricted), and the registry saw no request since the bake.
	_, port, _ := net.SplitHostPort(ups.reg.Host)
	if so, err := ssh("node-one", "timeout 5 bash -c '</dev/tcp/10.0.2.2/"+port+"' && echo reached || echo unreachable"); err != nil || !strings.Contains(so, "unreachable") {
		t.Errorf("node-one reached the host's registry port: %v\n%s", err, so)
	}
	if got := registryGets(ups.reg.Log()); got != pulls {
		t.Errorf("the registry served %d requests after the bake", got-pulls)
	}
}

// clusterUpstream is what the cluster test serves: the stand-ins over
// HTTP and the images in a local registry.
type clusterUpstream struct {
	srv            *upstream.Server
	reg            *upstream.Registry
	registriesConf string
}

// fromSourceValues is the shipped lab's from-source profile, relative to
// the repository root.
const fromSourceValues = "values/from-source.yaml"

// upstreamBuild is the work TestMain starts when TestCluster is going to
// run: the stand-ins, and labbake fetch of the from-source profile into the
// shared cache, so that compiling Kubernetes (the longest part of a cold
// run) overlaps the other tests' VMs, which leave a core idle.
var upstreamBuild struct {
	done     chan struct{}
	dir      string
	out      *upstream.Output
	err      error
	fetched  string        // labbake fetch's output
	fetchErr error         // and its error
	took     time.Duration // how long the fetch took
}

// startUpstream starts that work in the background when the test binary
// will run TestCluster (not -short, and -run lets it through).
func startUpstream(cache string) {
	if testing.Short() {
		return
	}
	if f := flag.Lookup("test.run"); f != nil && f.Value.String() != "" {
		if re, err := regexp.Compile(f.Value.String()); err != nil || !re.MatchString("TestCluster") {
			return
		}
	}
	upstreamBuild.done = make(chan struct{})
	go func() {
		defer close(upstreamBuild.done)
		ctx := context.Background()
		repo, err := filepath.Abs("../..")
		if err != nil {
			upstreamBuild.err = err
			return
		}
		ucache, err := upstream.DefaultCacheDir()
		if err != nil {
			upstreamBuild.err = err
			return
		}
		if upstreamBuild.dir, err = os.MkdirTemp("", "labbake-e2e-upstream-"); err != nil {
			upstreamBuild.err = err
			return
		}
		b := &upstream.Builder{CacheDir: ucache}
		upstreamBuild.out, upstreamBuild.err = upstream.Bake(ctx, b, upstream.Options{
			Versions: upstream.DefaultVersions(), OutDir: upstreamBuild.dir, Only: []string{"hostname", "calico"}})
		if upstreamBuild.err != nil {
			return
		}
		start := time.Now()
		var so, se bytes.Buffer
		err = cli.Run(ctx, []string{"-C", repo, "--cache", cache, "--out", filepath.Join(upstreamBuild.dir, "fetch-out"),
			"--values", filepath.Join(repo, fromSourceValues), "fetch", "--all"}, &so, &se, os.Getenv)
		upstreamBuild.took = time.Since(start)
		upstreamBuild.fetched = so.String()
		if err != nil {
			upstreamBuild.fetchErr = fmt.Errorf("labbake fetch --all with %s: %w\n%s", fromSourceValues, err, tail(se.String(), 30))
		}
	}()
}

// waitUpstream waits for that work, if started, and removes its files.
func waitUpstream() {
	if upstreamBuild.done == nil {
		return
	}
	<-upstreamBuild.done
	if upstreamBuild.dir != "" {
		os.RemoveAll(upstreamBuild.dir)
	}
}

// serveUpstream waits for the fetch of the from-source profile and the
// build of the stand-ins (with the Go build cache of
// LABBAKE_UPSTREAM_CACHE, or the default), serves them and pushes the
// images; it returns them with the values file for the shipped lab.
func serveUpstream(t *testing.T, ctx context.Context) (*clusterUpstream, string) {
	t.Helper()
	if upstreamBuild.done == nil {
		t.Fatal("TestMain did not start the from-source fetch")
	}
	<-upstreamBuild.done
	if upstreamBuild.err != nil {
		t.Fatalf("building the stand-ins: %v", upstreamBuild.err)
	}
	if upstreamBuild.fetchErr != nil {
		t.Fatal(upstreamBuild.fetchErr)
	}
	t.Logf("labbake fetch --all of the from-source profile took %s:\n%s", upstreamBuild.took.Round(time.Second), upstreamBuild.fetched)
	o, dir := upstreamBuild.out, upstreamBuild.dir
	srv, err := upstream.Serve(o.WWW)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	regDir := filepath.Join(dir, "registry")
	if err := os.MkdirAll(regDir, 0o755); err != nil {
		t.Fatal(err)
	}
	reg, err := upstream.StartRegistry(ctx, regDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	for _, img := range o.Images {
		if err := reg.Push(ctx, img); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "registries.conf")
	if err := os.WriteFile(conf, []byte(reg.RegistriesConf()), 0o644); err != nil {
		t.Fatal(err)
	}
	return &clusterUpstream{srv: srv, reg: reg, registriesConf: conf}, string(o.Values())
}

// profileVersion reads vars.KEY.FIELD from the shipped lab.yaml laid under
// the from-source profile, as the recipes see it.
func profileVersion(key, field string) string {
	lab, err := recipe.LoadContext(context.Background(), "../..", filepath.Join("../..", fromSourceValues))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	m, _ := lab.Vars[key].(map[string]any)
	s, _ := m[field].(string)
	return s
}

// registryGets counts the registry's access-log lines of GET or HEAD
// requests under /v2/ (docker-registry logs every request).
func registryGets(log string) int {
	n := 0
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "/v2/") && (strings.Contains(l, `"GET `) || strings.Contains(l, `"HEAD `)) {
			n++
		}
	}
	return n
}

// readyNodes counts the nodes of `kubectl get nodes -o json` whose Ready
// condition is True.
func readyNodes(j string) int {
	var l struct {
		Items []struct {
			Status struct {
				Conditions []struct{ Type, Status string }
			}
		}
	}
	if json.Unmarshal([]byte(j), &l) != nil {
		return 0
	}
	n := 0
	for _, it := range l.Items {
		for _, c := range it.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" {
				n++
			}
		}
	}
	return n
}

// manifestImages returns the refs of the images a role's manifest records.
func manifestImages(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Images []struct{ Ref string }
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Images) == 0 {
		t.Fatalf("%s records no image", path)
	}
	var refs []string
	for _, i := range m.Images {
		refs = append(refs, i.Ref)
	}
	return refs
}

// containsFields reports whether some line of s has a and b as its first
// two fields (crictl images: IMAGE TAG ...).
func containsFields(s, a, b string) bool {
	for _, l := range strings.Split(s, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == a && f[1] == b {
			return true
		}
	}
	return false
}

// checkCalico bakes the master image with network.cni: calico, takes the
// Calico add-on its lab-addons.service would apply out of the image (debugfs
// on the raw disk) and applies it to the running cluster the same way
// (server-side, kustomize): the manifests apply, the calico-node
// DaemonSet is scheduled on every node, and the IP pool, encapsulation and
// interface are the lab's. Calico itself is a stand-in here (it cannot be
// fetched or built on this machine), so pods keep the bridge network.
func checkCalico(t *testing.T, ctx context.Context, dir string, global []string, k func(time.Duration, ...string) (string, error)) {
	t.Helper()
	write(t, dir, "calico.yaml", calicoValues)
	out := filepath.Join(dir, "out-calico")
	args := append(append([]string{}, global...), "--values", filepath.Join(dir, "calico.yaml"), "--out", out, "build", "--keep-raw", "master")
	var so, se bytes.Buffer
	if err := cli.Run(ctx, args, &so, &se, os.Getenv); err != nil {
		t.Fatalf("labbake build master with calico: %v\n%s", err, tail(se.String(), 20))
	}
	b, err := os.ReadFile(filepath.Join(out, "master.manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Partitions []struct{ Offset int64 }
	}
	if err := json.Unmarshal(b, &m); err != nil || len(m.Partitions) == 0 {
		t.Fatalf("master.manifest.json: %v", err)
	}
	addon := filepath.Join(dir, "addon")
	if err := os.MkdirAll(addon, 0o755); err != nil {
		t.Fatal(err)
	}
	dev := fmt.Sprintf("%s?offset=%d", filepath.Join(out, "master.raw"), m.Partitions[len(m.Partitions)-1].Offset)
	if o, err := exec.Command("debugfs", "-R", "rdump /etc/kubernetes/addons/10-calico "+addon, dev).CombinedOutput(); err != nil {
		t.Fatalf("debugfs rdump: %v\n%s", err, o)
	}
	os.Remove(filepath.Join(out, "master.raw"))
	kdir := filepath.Join(addon, "10-calico")
	if o, err := k(3*time.Minute, "apply", "--server-side", "--force-conflicts", "--field-manager=labbake", "-k", kdir); err != nil {
		t.Fatalf("applying the Calico add-on: %v\n%s", err, o)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		o, _ := k(time.Minute, "-n", "kube-system", "get", "daemonset", "calico-node", "-o",
			"jsonpath={.status.desiredNumberScheduled}/{.status.currentNumberScheduled}")
		if o == "2/2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calico-node is not scheduled on both nodes (desired/current %q)", o)
		}
		time.Sleep(5 * time.Second)
	}
	env, err := k(time.Minute, "-n", "kube-system", "get", "daemonset", "calico-node", "-o",
		`jsonpath={range .spec.template.spec.containers[?(@.name=="calico-node")].env[*]}{.name}={.value}{"\n"}{end}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CALICO_IPV4POOL_CIDR=172.19.0.0/16", "CALICO_IPV4POOL_IPIP=Never",
		"CALICO_IPV4POOL_VXLAN=Never", "IP_AUTODETECTION_METHOD=interface=lab0"} {
		if !strings.Contains(env, want+"\n") {
			t.Errorf("calico-node's env lacks %s:\n%s", want, env)
		}
	}
	images, _ := k(time.Minute, "-n", "kube-system", "get", "daemonset,deployment", "-o", "jsonpath={..image}")
	for _, img := range strings.Fields(images) {
		if strings.Contains(img, "calico/") && !strings.HasPrefix(img, "quay.io/calico/") {
			t.Errorf("a Calico workload runs %s, not the lab's preloaded image", img)
		}
	}
	cni, _ := k(time.Minute, "-n", "kube-system", "get", "configmap", "calico-config", "-o", "jsonpath={.data.cni_network_config}")
	if !strings.Contains(cni, `"type": "calico"`) {
		t.Errorf("calico-config's cni_network_config:\n%s", cni)
	}
	t.Logf("Calico's add-on applied; calico-node scheduled on both nodes")
}

// otherLab moves every machine of the shipped lab to other addresses; with
// another output dir it also gets its own PKI and SSH keys.
const otherLab = `nodes:
  - {name: master, role: master, ip: 172.18.7.1, cpus: 2, memory: 2GiB}
  - {name: node-one, role: node, ip: 172.18.7.2, cpus: 2, memory: 2GiB}
  - {name: node-two, role: node, ip: 172.18.7.3, cpus: 2, memory: 2GiB}
`

// sameImagesForOtherLab bakes the shipped lab again with other addresses
// and another PKI: the role images must be the same bytes (everything
// that makes a machine itself is in its seed), the seeds must differ.
func sameImagesForOtherLab(t *testing.T, ctx context.Context, dir string, global []string, out string) {
	t.Helper()
	write(t, dir, "other.yaml", otherLab)
	other := filepath.Join(dir, "out-other")
	args := append(append([]string{}, global...), "--values", filepath.Join(dir, "other.yaml"), "--out", other, "build", "--all")
	var so, se bytes.Buffer
	if err := cli.Run(ctx, args, &so, &se, os.Getenv); err != nil {
		t.Fatalf("labbake build for other addresses: %v\n%s", err, tail(se.String(), 20))
	}
	for _, role := range []string{"master", "node"} {
		a, b := outputSHA(t, filepath.Join(out, role+".manifest.json")), outputSHA(t, filepath.Join(other, role+".manifest.json"))
		if a != b {
			t.Errorf("%s: the image differs between two labs that differ only in addresses and PKI: %s, %s", role, a, b)
		}
	}
	s1, err1 := os.ReadFile(filepath.Join(out, "seed", "master.iso"))
	s2, err2 := os.ReadFile(filepath.Join(other, "seed", "master.iso"))
	if err1 != nil || err2 != nil || bytes.Equal(s1, s2) {
		t.Errorf("the two labs' master seeds are the same (or missing: %v, %v)", err1, err2)
	}
}

// outputSHA is the sha256 of the image a manifest describes.
func outputSHA(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Output struct{ SHA256 string }
	}
	if err := json.Unmarshal(b, &m); err != nil || m.Output.SHA256 == "" {
		t.Fatalf("%s: no output sha256 (%v)", path, err)
	}
	return m.Output.SHA256
}
