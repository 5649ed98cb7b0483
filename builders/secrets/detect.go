package secrets

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"strings"
)

// The detector looks for a few anchors and judges what surrounds each one.
// Every private key format it knows contains one of them:
//
//   - "PRIVATE KEY": the BEGIN line of a PEM block ("-----BEGIN RSA PRIVATE
//     KEY-----", "-----BEGIN OPENSSH PRIVATE KEY-----", "-----BEGIN PGP
//     PRIVATE KEY BLOCK-----", …) or of an SSH2 key ("---- BEGIN SSH2
//     ENCRYPTED PRIVATE KEY ----");
//   - "PuTTY-User-Key-File-": the first line of a PuTTY .ppk file;
//   - "LS0tLS1CRUdJTi": "-----BEGIN" in base64, how a kubeconfig
//     (client-key-data) or a Kubernetes Secret carries a PEM key.
//
// An anchor is a finding only when a complete key follows: the BEGIN line,
// optional headers, a body of base64 lines, the matching END line, and a body
// that decodes to what the label promises (a DER SEQUENCE spanning the whole
// body whose first element is an INTEGER or a SEQUENCE, an "openssh-key-v1"
// structure with a private section, an OpenPGP secret key packet, the SSH2
// private key magic). A script or a document that mentions the BEGIN line,
// or shows a shortened example ("MIIEvQ...") is not a finding; a complete
// key is, wherever it is (test data, an example in a doc, a binary): it is
// usable by anyone who reads the image, so it must be listed under
// secrets.allow to be kept.
//
// Not detected: keys inside compressed files or archives (.gz, .tar, initrd
// images), PKCS#12 and Java keystores (binary containers that often hold
// only certificates), DER keys inside larger files, a PEM split across
// concatenated string literals, and blocks longer than maxKey.
var (
	anchorPrivate = []byte("PRIVATE KEY")
	anchorPuTTY   = []byte("PuTTY-User-Key-File-")
	anchorB64PEM  = []byte("LS0tLS1CRUdJTi") // base64("-----BEGIN")
)

const (
	// maxBefore bounds how far before "PRIVATE KEY" its BEGIN line starts.
	maxBefore = 128
	// maxKey bounds how many bytes a key takes after its anchor (an RSA
	// 16384-bit key is about 12 KiB of PEM; an OpenPGP key with subkeys a
	// few KiB more).
	maxKey = 64 << 10
	// maxDER is the size up to which a whole file is tried as a DER key.
	maxDER = 16 << 10
	// maxHeaders bounds the header lines of a PEM, PGP or SSH2 block.
	maxHeaders = 32
)

// detect returns the kind of the first private key found in data, or "".
// whole says data is a whole file (not a window of a larger one); only then
// is it tried as a DER-encoded key.
func detect(data []byte, whole bool) string {
	return detectDepth(data, whole, 0)
}

func detectDepth(data []byte, whole bool, depth int) string {
	if whole && len(data) <= maxDER {
		if k := derKey(data); k != "" {
			return k
		}
	}
	if k := scanAnchor(data, anchorPrivate, armoredAt); k != "" {
		return k
	}
	if k := scanAnchor(data, anchorPuTTY, puttyAt); k != "" {
		return k
	}
	if depth == 0 {
		for from := 0; ; {
			i := bytes.Index(data[from:], anchorB64PEM)
			if i < 0 {
				break
			}
			i += from
			k, end := base64PEMAt(data, i, depth)
			if k != "" {
				return k
			}
			from = max(end, i+len(anchorB64PEM))
		}
	}
	return ""
}

// scanAnchor calls judge at every occurrence of anchor until one returns a
// kind.
func scanAnchor(data, anchor []byte, judge func(data []byte, i int) string) string {
	for from := 0; ; {
		i := bytes.Index(data[from:], anchor)
		if i < 0 {
			return ""
		}
		i += from
		if k := judge(data, i); k != "" {
			return k
		}
		from = i + len(anchor)
	}
}

// Block styles: RFC 7468 PEM (also OpenPGP armor) and RFC 4716-like SSH2.
const (
	stylePEM = iota
	styleSSH2
)

// armoredAt judges the "PRIVATE KEY" at data[i:]: the rest of a BEGIN line
// around it, then the block that follows.
func armoredAt(data []byte, i int) string {
	lo := max(0, i-maxBefore)
	b := bytes.LastIndex(data[lo:i], []byte("BEGIN "))
	if b < 0 {
		return ""
	}
	b += lo
	var style int
	switch {
	case b >= 5 && string(data[b-5:b]) == "-----":
		style = stylePEM
	case b >= 5 && string(data[b-5:b]) == "---- ":
		style = styleSSH2
	default:
		return ""
	}
	labelEnd := i + len(anchorPrivate)
	if bytes.HasPrefix(data[labelEnd:], []byte(" BLOCK")) {
		labelEnd += len(" BLOCK")
	}
	label := string(data[b+len("BEGIN ") : labelEnd])
	if !validLabel(label) {
		return ""
	}
	closing := "-----"
	if style == styleSSH2 {
		closing = " ----"
	}
	p := labelEnd
	if !bytes.HasPrefix(data[p:], []byte(closing)) {
		return ""
	}
	p += len(closing)
	// The BEGIN line must end here.
	p = skipBlanks(data, p)
	next, ok := lineBreak(data, p)
	if !ok {
		return ""
	}
	var end string
	if style == stylePEM {
		end = "-----END " + label + "-----"
	} else {
		end = "---- END " + label + " ----"
	}
	body, hdrs, ok := blockBody(data[next:min(len(data), next+maxKey)], end)
	if !ok {
		return ""
	}
	return judgeBody(label, body, hdrs)
}

// validLabel accepts the label of a private key block: upper-case words, digits
// and a few punctuation marks ("X9.42 DH PRIVATE KEY"), ending in PRIVATE KEY
// or PRIVATE KEY BLOCK.
func validLabel(l string) bool {
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ' ' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return strings.HasSuffix(l, "PRIVATE KEY") || strings.HasSuffix(l, "PRIVATE KEY BLOCK")
}

func skipBlanks(data []byte, p int) int {
	for p < len(data) && (data[p] == ' ' || data[p] == '\t' || data[p] == '\r') {
		p++
	}
	return p
}

// lineBreak reports whether a line break starts at data[p:] and returns the
// position after it. A line break is "\n" or, inside a string literal of a
// JSON, YAML or source file, the two characters `\n` (optionally after `\r`).
func lineBreak(data []byte, p int) (int, bool) {
	if p < len(data) && data[p] == '\n' {
		return p + 1, true
	}
	if bytes.HasPrefix(data[p:], []byte(`\r\n`)) {
		return p + 4, true
	}
	if bytes.HasPrefix(data[p:], []byte(`\n`)) {
		return p + 2, true
	}
	return 0, false
}

// nextLine returns the line at data[p:] without its break, trimmed of
// blanks, and the position after the break. ok is false when no break
// follows within data.
func nextLine(data []byte, p int) (line []byte, next int, ok bool) {
	for q := p; q < len(data); q++ {
		c := data[q]
		if c == '\n' || c == '\\' {
			if n, isBreak := lineBreak(data, q); isBreak {
				return trimBlanks(data[p:q]), n, true
			}
		}
	}
	return nil, 0, false
}

func trimBlanks(b []byte) []byte {
	return bytes.TrimRight(bytes.TrimLeft(b, " \t"), " \t\r")
}

// headers seen in a block's header lines that change its kind.
type headers struct {
	encrypted bool // Proc-Type: 4,ENCRYPTED
	dekInfo   bool // DEK-Info: (the cipher of a legacy encrypted PEM key)
}

// blockBody reads the lines after a BEGIN line up to the line starting with
// end: header lines ("Name: value", an SSH2 header continued with a trailing
// backslash), blank lines before the body, base64 lines, and an OpenPGP
// checksum line ("=XXXX") after them. It returns the concatenated base64.
func blockBody(data []byte, end string) (body []byte, h headers, ok bool) {
	p := 0
	nhdr := 0
	inBody := false
	crc := false
	continued := false
	for {
		q := skipBlanks(data, p)
		if bytes.HasPrefix(data[q:], []byte(end)) {
			return body, h, len(body) > 0
		}
		line, next, ok := nextLine(data, p)
		if !ok {
			return nil, h, false
		}
		p = next
		switch {
		case continued:
			nhdr++
			continued = bytes.HasSuffix(line, []byte(`\`))
		case crc:
			return nil, h, false // nothing but END after the checksum
		case len(line) == 0:
			if inBody {
				return nil, h, false
			}
		case !inBody && isHeader(line):
			nhdr++
			if bytes.HasPrefix(line, []byte("Proc-Type:")) && bytes.Contains(line, []byte("ENCRYPTED")) {
				h.encrypted = true
			}
			if bytes.HasPrefix(line, []byte("DEK-Info:")) {
				h.dekInfo = true
			}
			continued = bytes.HasSuffix(line, []byte(`\`))
		case inBody && line[0] == '=' && len(line) == 5 && isBase64(line[1:]):
			crc = true
		case isBase64(line):
			inBody = true
			if len(body)+len(line) > maxKey {
				return nil, h, false
			}
			body = append(body, line...)
		default:
			return nil, h, false
		}
		if nhdr > maxHeaders {
			return nil, h, false
		}
	}
}

// isHeader reports whether line is "Name: value" (RFC 1421, RFC 4880 armor,
// RFC 4716).
func isHeader(line []byte) bool {
	c := bytes.IndexByte(line, ':')
	if c <= 0 {
		return false
	}
	for _, b := range line[:c] {
		if !(b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-') {
			return false
		}
	}
	return true
}

func isBase64(b []byte) bool {
	for _, c := range b {
		if !isBase64Char(c) {
			return false
		}
	}
	return len(b) > 0
}

func isBase64Char(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '='
}

// pemKinds names the usual labels.
var pemKinds = map[string]string{
	"RSA PRIVATE KEY":            "RSA private key",
	"EC PRIVATE KEY":             "EC private key",
	"DSA PRIVATE KEY":            "DSA private key",
	"PRIVATE KEY":                "PKCS#8 private key",
	"ENCRYPTED PRIVATE KEY":      "encrypted PKCS#8 private key",
	"OPENSSH PRIVATE KEY":        "OpenSSH private key",
	"PGP PRIVATE KEY BLOCK":      "OpenPGP private key",
	"SSH2 ENCRYPTED PRIVATE KEY": "SSH2 private key",
}

// judgeBody decodes a block's base64 body and checks it has the structure
// its label promises.
func judgeBody(label string, b64 []byte, h headers) string {
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(b64)))
	n, err := base64.StdEncoding.Decode(raw, b64)
	if err != nil {
		return ""
	}
	raw = raw[:n]
	kind := pemKinds[label]
	if kind == "" {
		kind = strings.ToLower(strings.TrimSuffix(label, " PRIVATE KEY")) + " private key (PEM)"
	}
	var ok bool
	switch label {
	case "OPENSSH PRIVATE KEY":
		ok = openSSHKey(raw)
	case "PGP PRIVATE KEY BLOCK":
		ok = pgpSecretKey(raw)
	case "SSH2 ENCRYPTED PRIVATE KEY":
		ok = len(raw) > 8 && string(raw[:4]) == "\x3f\x6f\xf9\xeb"
	default:
		if h.encrypted {
			// OpenSSL's legacy encryption: the body is ciphertext, in
			// blocks of the cipher named by DEK-Info.
			ok = h.dekInfo && len(raw) >= 64 && len(raw)%8 == 0
		} else {
			ok = derKeyShape(raw)
		}
	}
	if !ok {
		return ""
	}
	if h.encrypted {
		kind = "encrypted " + kind
	}
	return kind
}

// derTLV splits one DER element off b: its tag, its contents and what
// follows. Only definite lengths are accepted (DER).
func derTLV(b []byte) (tag byte, content, rest []byte, ok bool) {
	if len(b) < 2 {
		return 0, nil, nil, false
	}
	tag = b[0]
	if tag&0x1f == 0x1f {
		return 0, nil, nil, false // high tag numbers: not in a key
	}
	l := int(b[1])
	p := 2
	if l&0x80 != 0 {
		nb := l & 0x7f
		if nb == 0 || nb > 4 || len(b) < 2+nb {
			return 0, nil, nil, false
		}
		l = 0
		for _, c := range b[2 : 2+nb] {
			l = l<<8 | int(c)
		}
		p += nb
		if l < 0x80 {
			return 0, nil, nil, false // not minimal: not DER
		}
	}
	if l < 0 || len(b)-p < l {
		return 0, nil, nil, false
	}
	return tag, b[p : p+l], b[p+l:], true
}

// derKeyShape reports whether raw is one DER SEQUENCE, exactly, whose first
// element is an INTEGER (PKCS#1, SEC 1, DSA, PKCS#8 version) or a SEQUENCE
// (PKCS#8 EncryptedPrivateKeyInfo's algorithm).
func derKeyShape(raw []byte) bool {
	tag, content, rest, ok := derTLV(raw)
	if !ok || tag != 0x30 || len(rest) != 0 {
		return false
	}
	first, _, _, ok := derTLV(content)
	return ok && (first == 0x02 || first == 0x30)
}

// derKey tries a whole small file as a DER private key, with the parsers of
// the standard library (a DER certificate or anything else is no finding).
func derKey(data []byte) string {
	if len(data) < 32 || data[0] != 0x30 {
		return ""
	}
	if !derKeyShape(data) {
		return ""
	}
	if _, err := x509.ParsePKCS8PrivateKey(data); err == nil {
		return "PKCS#8 private key (DER)"
	}
	if _, err := x509.ParsePKCS1PrivateKey(data); err == nil {
		return "RSA private key (DER)"
	}
	if _, err := x509.ParseECPrivateKey(data); err == nil {
		return "EC private key (DER)"
	}
	return ""
}

// openSSHKey checks the "openssh-key-v1" structure (PROTOCOL.key): cipher,
// KDF, KDF options, a key count, the public keys and a non-empty private
// section whose length is a multiple of the cipher's block size (8 at
// least), and nothing after it.
func openSSHKey(raw []byte) bool {
	const magic = "openssh-key-v1\x00"
	if !bytes.HasPrefix(raw, []byte(magic)) {
		return false
	}
	b := raw[len(magic):]
	str := func() ([]byte, bool) {
		if len(b) < 4 {
			return nil, false
		}
		n := int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3])
		if n < 0 || len(b)-4 < n {
			return nil, false
		}
		s := b[4 : 4+n]
		b = b[4+n:]
		return s, true
	}
	for range 3 { // ciphername, kdfname, kdfoptions
		if _, ok := str(); !ok {
			return false
		}
	}
	if len(b) < 4 {
		return false
	}
	nkeys := int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3])
	b = b[4:]
	if nkeys < 1 || nkeys > 64 {
		return false
	}
	for range nkeys {
		if _, ok := str(); !ok {
			return false
		}
	}
	priv, ok := str()
	return ok && len(priv) >= 8 && len(priv)%8 == 0 && len(b) == 0
}

// pgpSecretKey reports whether raw starts with an OpenPGP Secret-Key packet
// (tag 5), in the old or the new packet format (RFC 4880, section 4.2).
func pgpSecretKey(raw []byte) bool {
	if len(raw) < 8 || raw[0]&0x80 == 0 {
		return false
	}
	if raw[0]&0x40 != 0 {
		return raw[0]&0x3f == 5
	}
	return (raw[0]>>2)&0x0f == 5
}

// puttyAt judges a "PuTTY-User-Key-File-" at data[i:]. Its line must be
// "PuTTY-User-Key-File-N: ALGORITHM" (what precedes it on the line does not
// matter), and the lines after it the format's fields in order: Encryption,
// Comment, Public-Lines: N and N lines of base64, for version 3 with
// encryption Key-Derivation and its Argon2 parameters, then Private-Lines: M
// and M lines of base64.
func puttyAt(data []byte, i int) string {
	lim := data[:min(len(data), i+maxKey)]
	line, p, ok := nextLine(lim, i)
	if !ok {
		return ""
	}
	version, algo, found := bytes.Cut(line[len(anchorPuTTY):], []byte(": "))
	if !found || atoiSmall(version) < 1 || len(algo) == 0 || bytes.ContainsAny(algo, " \t") {
		return ""
	}
	field := func(want string) ([]byte, bool) {
		l, next, ok := nextLine(lim, p)
		if !ok {
			return nil, false
		}
		name, value, found := bytes.Cut(l, []byte(": "))
		if !found || string(name) != want {
			return nil, false
		}
		p = next
		return value, true
	}
	// blob reads the base64 lines a Public-Lines or Private-Lines field
	// announces.
	blob := func(count []byte) bool {
		n := atoiSmall(count)
		if n <= 0 {
			return false
		}
		var b64 []byte
		for range n {
			l, next, ok := nextLine(lim, p)
			if !ok || !isBase64(l) {
				return false
			}
			b64 = append(b64, l...)
			p = next
		}
		_, err := base64.StdEncoding.DecodeString(string(b64))
		return err == nil
	}
	enc, ok := field("Encryption")
	if !ok {
		return ""
	}
	if _, ok := field("Comment"); !ok {
		return ""
	}
	if n, ok := field("Public-Lines"); !ok || !blob(n) {
		return ""
	}
	if _, ok := field("Key-Derivation"); ok {
		for _, f := range []string{"Argon2-Memory", "Argon2-Passes", "Argon2-Parallelism", "Argon2-Salt"} {
			if _, ok := field(f); !ok {
				return ""
			}
		}
	}
	if n, ok := field("Private-Lines"); !ok || !blob(n) {
		return ""
	}
	if string(enc) != "none" {
		return "encrypted PuTTY private key"
	}
	return "PuTTY private key"
}

// atoiSmall parses a small decimal number; -1 when it is not one.
func atoiSmall(b []byte) int {
	if len(b) == 0 || len(b) > 4 {
		return -1
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// base64PEMAt judges the "LS0tLS1CRUdJTi" at data[i:]: the run of base64
// (line breaks allowed, as `base64` wraps) that starts there is decoded and
// the result searched for a PEM key. end is where the run stops, so the
// caller does not judge the same run again.
func base64PEMAt(data []byte, i, depth int) (kind string, end int) {
	lim := min(len(data), i+maxKey*4/3+4)
	j := i
	for j < lim && (isBase64Char(data[j]) || data[j] == '\n' || data[j] == '\r') {
		j++
	}
	raw := make([]byte, base64.StdEncoding.DecodedLen(j-i))
	n, _ := base64.StdEncoding.Decode(raw, data[i:j]) // what decodes before any garbage
	if k := detectDepth(raw[:n], false, depth+1); k != "" {
		return k + " (base64-encoded PEM)", j
	}
	return "", j
}
