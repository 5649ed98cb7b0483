package pki

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/crypto/ssh"
)

// PKI is the lab's PKI as loaded (and completed) from its directory.
type PKI struct {
	dir      string
	spec     Spec
	cas      map[string]*pair // by base name: "ca", "etcd/ca", "front-proxy-ca"
	leaves   map[string]*pair // by base name: "apiserver", "machines/n1/kubelet", …
	saKey    []byte           // sa.key, PEM
	saPub    []byte           // sa.pub, PEM
	labKey   *sshPair         // nil when Spec.AuthorizedKeys are given
	hostKeys map[string]*sshPair
	changes  []Change
}

// Change is one thing Ensure or Renew wrote.
type Change struct {
	File   string // relative to the PKI directory: "apiserver.crt" (its key was written with it)
	Action string // "created", "re-issued", "renewed"
	Reason string // why, for "re-issued": what no longer matched the spec
}

func (c Change) String() string {
	if c.Reason == "" {
		return c.Action + " " + c.File
	}
	return c.Action + " " + c.File + ": " + c.Reason
}

// DamageError is a PKI directory that labbake will not repair by itself:
// a file that is missing, unreadable or does not belong with the others.
type DamageError struct {
	File    string // the file at fault (absolute or as the directory was given)
	Problem string
	Fix     string // what the user can do
}

func (e *DamageError) Error() string {
	return fmt.Sprintf("pki: %s: %s; %s", e.File, e.Problem, e.Fix)
}

// Option changes how Ensure and Renew work.
type Option func(*config)

type config struct {
	log *slog.Logger
	ctx context.Context
}

// WithLogger logs every change (Info) and what was kept as it was (Debug).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.log = l
		}
	}
}

// WithContext makes the wait for another process holding the PKI
// directory's lock end when ctx is done (Ctrl-C, SIGTERM): the call then
// fails with ctx's error and writes nothing.
func WithContext(ctx context.Context) Option {
	return func(c *config) {
		if ctx != nil {
			c.ctx = ctx
		}
	}
}

// Ensure loads the lab's PKI from dir and creates what is missing: all of
// it for a new lab, a machine's certificates and keys for a new machine. A
// leaf certificate that no longer says what the spec asks for (a machine's
// IP changed, a control-plane machine was added) is re-issued by the same
// CA. What exists and matches is not touched. A damaged directory is an
// error (errors.As finds a *DamageError) and nothing is written then.
func Ensure(dir string, spec Spec, opts ...Option) (*PKI, error) {
	return run(dir, spec, false, opts)
}

// Renew re-issues every leaf certificate of the lab with a new key, signed
// by the same CAs, and repairs damaged leaves that way. The CAs, the
// service-account key and the SSH keys stay.
func Renew(dir string, spec Spec, opts ...Option) (*PKI, error) {
	return run(dir, spec, true, opts)
}

// Changes lists what the call that returned p wrote, in the order written.
func (p *PKI) Changes() []Change { return slices.Clone(p.changes) }

// Dir is the PKI directory.
func (p *PKI) Dir() string { return p.dir }

const leafFix = "run `labbake pki renew` to re-issue the lab's leaf certificates"

func caFix(dir string) string {
	return "restore it from a backup, or delete " + dir +
		" to start a new lab (running machines keep trusting the old one: rebuild their seeds and restart them)"
}

func sshFix(priv, pub string) string {
	return "restore it, or delete both " + priv + " and " + pub +
		" to make a new key pair (running machines keep the old one until their seeds are rebuilt)"
}

// run is Ensure (renew false) and Renew (renew true). It reads and checks
// everything first, then writes.
func run(dir string, spec Spec, renew bool, opts []Option) (*PKI, error) {
	cfg := config{log: slog.New(slog.DiscardHandler), ctx: context.Background()}
	for _, o := range opts {
		o(&cfg)
	}
	if err := spec.validate(); err != nil {
		return nil, err
	}
	for i, k := range spec.AuthorizedKeys {
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k)); err != nil {
			return nil, fmt.Errorf("pki: authorized key %d: %w", i+1, err)
		}
	}
	if renew {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("pki: there is no lab PKI to renew: %w", err)
		}
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	unlock, err := lockDir(cfg.ctx, dir, func() {
		cfg.log.Info("waiting for another labbake holding the lab's PKI", "dir", dir)
	})
	if err != nil {
		return nil, err
	}
	defer unlock()
	st := store{dir}
	p := &PKI{
		dir:      dir,
		spec:     spec,
		cas:      map[string]*pair{},
		leaves:   map[string]*pair{},
		hostKeys: map[string]*sshPair{},
	}
	r := &runner{st: st, p: p, renew: renew, log: cfg.log, loaded: map[string]int{}, unsigned: map[string][]*DamageError{}}
	leaves := spec.leaves()
	r.authorities(leaves)
	if len(r.errs) > 0 {
		return nil, errors.Join(r.errs...)
	}
	r.serviceAccount()
	for _, l := range leaves {
		r.leaf(l)
	}
	r.foreignCAs()
	r.sshKeys()
	if len(r.errs) > 0 {
		return nil, errors.Join(r.errs...)
	}

	if err := st.mkdir("."); err != nil {
		return nil, err
	}
	for _, w := range r.writes {
		if err := st.put(w); err != nil {
			return nil, err
		}
	}
	for _, name := range r.keys {
		fixed, err := st.keepPrivate(name)
		if err != nil {
			return nil, err
		}
		if fixed {
			cfg.log.Warn("pki: private key was readable by others; made it 0600", "file", st.path(name))
		}
	}
	for _, c := range p.changes {
		cfg.log.Info("pki: "+c.Action, "file", st.path(c.File), "reason", c.Reason)
	}
	r.staleMachines()
	return p, nil
}

// runner gathers what one run found, must write and did wrong.
type runner struct {
	st     store
	p      *PKI
	renew  bool
	log    *slog.Logger
	errs   []error
	writes []write
	keys   []string // private key files loaded, kept 0600
	// Per CA, the leaves found on disk and those it did not sign.
	loaded   map[string]int
	unsigned map[string][]*DamageError
	newLab   bool // the Kubernetes CA is made by this run
}

func (r *runner) damage(file, problem, fix string) {
	r.errs = append(r.errs, &DamageError{File: r.st.path(file), Problem: problem, Fix: fix})
}

func (r *runner) fail(err error) { r.errs = append(r.errs, err) }

func (r *runner) change(file, action, reason string) {
	r.p.changes = append(r.p.changes, Change{File: file, Action: action, Reason: reason})
}

// readPair reads NAME.crt and NAME.key (nil for a missing file).
func (r *runner) readPair(name string) (crt, key []byte, ok bool) {
	crt, err := r.st.read(name + ".crt")
	if err != nil {
		r.fail(err)
		return nil, nil, false
	}
	key, err = r.st.read(name + ".key")
	if err != nil {
		r.fail(err)
		return nil, nil, false
	}
	return crt, key, true
}

func (r *runner) putPair(name string, pr *pair) {
	r.writes = append(r.writes,
		write{name: name + ".key", data: pr.keyPEM, mode: privateMode},
		write{name: name + ".crt", data: pr.certPEM, mode: publicMode})
}

// loadPair parses a certificate and its key and checks they belong
// together; problems are reported with fix.
func (r *runner) loadPair(name string, crt, key []byte, fix string) (*pair, bool) {
	cert, err := parseCertPEM(crt)
	if err != nil {
		r.damage(name+".crt", "not a PEM certificate: "+err.Error(), fix)
		return nil, false
	}
	k, err := parseKeyPEM(key)
	if err != nil {
		r.damage(name+".key", "not a PEM ECDSA private key: "+err.Error(), fix)
		return nil, false
	}
	if !matches(cert, k) {
		r.damage(name+".crt", "does not match its private key "+name+".key", fix)
		return nil, false
	}
	return &pair{cert: cert, key: k, certPEM: crt, keyPEM: key}, true
}

func (r *runner) authorities(leaves []leafSpec) {
	fix := caFix(r.st.dir)
	for _, a := range authorities {
		crt, key, ok := r.readPair(a.name)
		switch {
		case !ok:
		case crt == nil && key == nil:
			if r.renew {
				r.fail(fmt.Errorf("pki: no %s.crt in %s: there is no lab PKI to renew", a.name, r.st.dir))
				continue
			}
			if orphan := r.signedBy(a.name, leaves); orphan != "" {
				r.damage(a.name+".key", "missing with "+a.name+".crt while "+orphan+", which it signed, is there", fix)
				continue
			}
			if a.name != kubernetesCA && !r.newLab {
				r.damage(a.name+".key", "missing with "+a.name+".crt in a lab that has its Kubernetes CA", fix)
				continue
			}
			pr, err := newCA(a.cn, r.p.spec.Now)
			if err != nil {
				r.fail(err)
				continue
			}
			if a.name == kubernetesCA {
				r.newLab = true
			}
			r.p.cas[a.name] = pr
			r.putPair(a.name, pr)
			r.change(a.name+".crt", "created", "new lab")
		case key == nil:
			r.damage(a.name+".key", "missing while "+a.name+".crt is there", fix)
		case crt == nil:
			r.damage(a.name+".crt", "missing while "+a.name+".key is there", fix)
		default:
			pr, ok := r.loadPair(a.name, crt, key, fix)
			if !ok {
				continue
			}
			if !pr.cert.IsCA || pr.cert.KeyUsage&x509.KeyUsageCertSign == 0 {
				r.damage(a.name+".crt", "is not a CA certificate", fix)
				continue
			}
			r.p.cas[a.name] = pr
			r.keys = append(r.keys, a.name+".key")
			r.warnExpiry(a.name+".crt", pr.cert, "the lab's machines will stop trusting each other then: plan a new lab")
		}
	}
}

// signedBy names a leaf file of ca that exists, "" if none does.
func (r *runner) signedBy(ca string, leaves []leafSpec) string {
	for _, l := range leaves {
		if l.ca != ca {
			continue
		}
		for _, f := range []string{l.name + ".crt", l.name + ".key"} {
			ok, err := r.st.exists(f)
			if err != nil {
				r.fail(err)
				return ""
			}
			if ok {
				return f
			}
		}
	}
	return ""
}

// serviceAccount loads or (for a new lab) makes the key pair that signs
// service-account tokens. It is not a certificate: Renew keeps it, since a
// new one would void every token issued.
func (r *runner) serviceAccount() {
	fix := caFix(r.st.dir)
	key, err := r.st.read("sa.key")
	if err != nil {
		r.fail(err)
		return
	}
	pub, err := r.st.read("sa.pub")
	if err != nil {
		r.fail(err)
		return
	}
	switch {
	case key == nil && pub == nil:
		if !r.newLab {
			r.damage("sa.key", "missing with sa.pub in a lab that has its Kubernetes CA (a new key would void every service-account token)", fix)
			return
		}
		k, keyPEM, err := newKey()
		if err != nil {
			r.fail(err)
			return
		}
		der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			r.fail(fmt.Errorf("pki: encoding sa.pub: %w", err))
			return
		}
		r.p.saKey, r.p.saPub = keyPEM, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		r.writes = append(r.writes,
			write{name: "sa.key", data: r.p.saKey, mode: privateMode},
			write{name: "sa.pub", data: r.p.saPub, mode: publicMode})
		r.change("sa.key", "created", "new lab")
	case key == nil:
		r.damage("sa.key", "missing while sa.pub is there", fix)
	case pub == nil:
		r.damage("sa.pub", "missing while sa.key is there", fix)
	default:
		k, err := parseKeyPEM(key)
		if err != nil {
			r.damage("sa.key", "not a PEM ECDSA private key: "+err.Error(), fix)
			return
		}
		pk, err := parsePublicKeyPEM(pub)
		if err != nil {
			r.damage("sa.pub", "not a PEM public key: "+err.Error(), fix)
			return
		}
		if !k.PublicKey.Equal(pk) {
			r.damage("sa.pub", "is not the public half of sa.key", fix)
			return
		}
		r.p.saKey, r.p.saPub = key, pub
		r.keys = append(r.keys, "sa.key")
	}
}

func parsePublicKeyPEM(data []byte) (*ecdsa.PublicKey, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM data")
	}
	if block.Type != "PUBLIC KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("want one PUBLIC KEY block, got %q", block.Type)
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	ec, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an ECDSA key", k)
	}
	return ec, nil
}

// leaf keeps, issues or re-issues one leaf certificate.
func (r *runner) leaf(l leafSpec) {
	ca := r.p.cas[l.ca]
	reissue := func(action, reason string) {
		pr, err := issue(l, ca, r.p.spec.Now)
		if err != nil {
			r.fail(err)
			return
		}
		r.p.leaves[l.name] = pr
		r.putPair(l.name, pr)
		r.change(l.name+".crt", action, reason)
	}
	crt, key, ok := r.readPair(l.name)
	switch {
	case !ok:
		return
	case crt == nil && key == nil:
		reissue("created", "")
		return
	case r.renew:
		reissue("renewed", "")
		return
	case key == nil:
		r.damage(l.name+".key", "missing while "+l.name+".crt is there", leafFix)
		return
	case crt == nil:
		r.damage(l.name+".crt", "missing while "+l.name+".key is there", leafFix)
		return
	}
	pr, ok := r.loadPair(l.name, crt, key, leafFix)
	if !ok {
		return
	}
	r.loaded[l.ca]++
	if err := pr.cert.CheckSignatureFrom(ca.cert); err != nil || !bytes.Equal(pr.cert.RawIssuer, ca.cert.RawSubject) {
		r.unsigned[l.ca] = append(r.unsigned[l.ca], &DamageError{
			File: r.st.path(l.name + ".crt"), Problem: "is not signed by its CA " + l.ca + ".crt", Fix: leafFix})
		return
	}
	r.keys = append(r.keys, l.name+".key")
	if d := l.diff(pr.cert); d != "" {
		reissue("re-issued", d)
		return
	}
	r.p.leaves[l.name] = pr
	r.warnExpiry(l.name+".crt", pr.cert, "run `labbake pki renew`")
}

// warnExpiry logs a kept certificate that ends within ExpiryWarning of
// Spec.Now, or has ended.
func (r *runner) warnExpiry(file string, c *x509.Certificate, fix string) {
	if r.p.spec.Now.Add(ExpiryWarning).Before(c.NotAfter) {
		return
	}
	msg := "pki: certificate expires soon; " + fix
	if !r.p.spec.Now.Before(c.NotAfter) {
		msg = "pki: certificate has expired; " + fix
	}
	r.log.Warn(msg, "file", r.st.path(file), "not_after", c.NotAfter)
}

// foreignCAs reports the leaves a CA did not sign: one by one, or, when it
// signed none of several, as that CA not being the lab's.
func (r *runner) foreignCAs() {
	for _, a := range authorities {
		bad := r.unsigned[a.name]
		if len(bad) > 1 && len(bad) == r.loaded[a.name] {
			r.errs = append(r.errs, &DamageError{
				File:    r.st.path(a.name + ".crt"),
				Problem: fmt.Sprintf("signed none of the %d certificates it should have (%s, …): it is not this lab's CA", len(bad), filepath.Base(bad[0].File)),
				Fix: "restore the lab's CA from a backup, or run `labbake pki renew` to re-issue every leaf certificate with this one " +
					"(running machines then need new seeds)",
			})
			continue
		}
		for _, e := range bad {
			r.errs = append(r.errs, e)
		}
	}
}

// sshKeys loads or makes the lab key pair and each machine's host key.
func (r *runner) sshKeys() {
	if len(r.p.spec.AuthorizedKeys) == 0 {
		r.p.labKey = r.sshPair(labKeyName, "labbake@"+r.p.spec.LabName)
	}
	for _, m := range r.p.spec.Machines {
		if k := r.sshPair(hostKeyName(m.Name), "root@"+m.Name); k != nil {
			r.p.hostKeys[m.Name] = k
		}
	}
}

func (r *runner) sshPair(name, comment string) *sshPair {
	pubName := name + ".pub"
	priv, err := r.st.read(name)
	if err != nil {
		r.fail(err)
		return nil
	}
	pub, err := r.st.read(pubName)
	if err != nil {
		r.fail(err)
		return nil
	}
	fix := sshFix(r.st.path(name), r.st.path(pubName))
	switch {
	case priv == nil && pub == nil:
		k, err := newSSHKey(comment)
		if err != nil {
			r.fail(err)
			return nil
		}
		r.writes = append(r.writes,
			write{name: name, data: k.private, mode: privateMode},
			write{name: pubName, data: k.public, mode: publicMode})
		r.change(name, "created", "")
		return k
	case priv == nil:
		r.damage(name, "missing while "+pubName+" is there", fix)
	case pub == nil:
		r.damage(pubName, "missing while "+name+" is there", fix)
	default:
		k, err := parseSSHPair(priv, pub)
		if err != nil {
			r.damage(name, err.Error(), fix)
			return nil
		}
		r.keys = append(r.keys, name)
		return k
	}
	return nil
}

// staleMachines logs the machines whose files are kept though they left
// the lab.
func (r *runner) staleMachines() {
	entries, err := os.ReadDir(r.st.path("machines"))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("pki: listing machines", "err", err)
		}
		return
	}
	for _, e := range entries {
		if _, ok := r.p.spec.machine(e.Name()); !ok && e.IsDir() {
			r.log.Info("pki: machine is no longer in the lab; its keys are kept", "machine", e.Name(), "dir", r.st.path(machineDir(e.Name())))
		}
	}
}

// sortedMachines is Spec.Machines sorted by name.
func (p *PKI) sortedMachines() []Machine {
	ms := slices.Clone(p.spec.Machines)
	slices.SortFunc(ms, func(a, b Machine) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return ms
}
