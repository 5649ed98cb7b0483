package recipe

import (
	"fmt"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig/v3"
)

// droppedFuncs are sprig v3.3.0 functions a recipe may not call: they read
// the environment or the network, depend on the clock or the host's time
// zone, draw random numbers, or make keys, salts and IVs. Without them
// rendering the same lab twice gives the same bytes.
func droppedFuncs() []string {
	return []string{
		// environment and network
		"env", "expandenv", "getHostByName",
		// clock and local time zone
		"now", "date", "dateInZone", "date_in_zone", "htmlDate", "htmlDateInZone",
		"ago", "unixEpoch", "durationRound", "toDate", "mustToDate",
		"dateModify", "date_modify", "mustDateModify", "must_date_modify",
		// random
		"randAlpha", "randAlphaNum", "randAscii", "randNumeric", "randBytes",
		"randInt", "shuffle", "uuidv4",
		// keys, certificates, salted hashes, random IVs
		"genPrivateKey", "genCA", "genCAWithKey", "genSelfSignedCert",
		"genSelfSignedCertWithKey", "genSignedCert", "genSignedCertWithKey",
		"buildCustomCert", "derivePassword", "htpasswd", "bcrypt", "encryptAES",
	}
}

// maxSeq bounds the lists until, untilStep and seq build, and maxRepeat the
// bytes repeat makes, so a template cannot exhaust memory in one call.
const (
	maxSeq    = 1 << 20
	maxRepeat = 16 << 20
)

// funcMap returns the functions templates may call: sprig's text functions
// minus droppedFuncs, with repeat, until, untilStep and seq bounded.
func funcMap() template.FuncMap {
	fm := sprig.TxtFuncMap()
	for _, name := range droppedFuncs() {
		delete(fm, name)
	}
	fm["repeat"] = func(count int, s string) (string, error) {
		if count < 0 || (len(s) > 0 && count > maxRepeat/len(s)) {
			return "", fmt.Errorf("repeat: count %d out of range", count)
		}
		return strings.Repeat(s, count), nil
	}
	fm["untilStep"] = boundedUntilStep
	fm["until"] = func(count int) ([]int, error) {
		step := 1
		if count < 0 {
			step = -1
		}
		return boundedUntilStep(0, count, step)
	}
	fm["seq"] = boundedSeq
	return fm
}

// seqLen is how many items untilStep(start, stop, step) makes, or -1 when
// that is more than maxSeq.
func seqLen(start, stop, step int) int64 {
	if step == 0 || stop == start || (stop < start) != (step < 0) {
		return 0
	}
	// Unsigned differences cannot overflow: |stop-start| < 2^64.
	var span, s uint64
	if stop > start {
		span, s = uint64(stop)-uint64(start), uint64(step)
	} else {
		span, s = uint64(start)-uint64(stop), -uint64(step)
	}
	n := span / s
	if span%s != 0 {
		n++
	}
	if n > maxSeq {
		return -1
	}
	return int64(n)
}

func boundedUntilStep(start, stop, step int) ([]int, error) {
	n := seqLen(start, stop, step)
	if n < 0 {
		return nil, fmt.Errorf("untilStep: more than %d items", maxSeq)
	}
	v := make([]int, 0, n)
	for i := int64(0); i < n; i++ {
		v = append(v, start+int(i)*step)
	}
	return v, nil
}

// boundedSeq is sprig's seq (like the seq command) with at most maxSeq
// numbers.
func boundedSeq(params ...int) (string, error) {
	var start, end, step int
	switch len(params) {
	case 0:
		return "", nil
	case 1:
		start, end, step = 1, params[0], 1
		if end < start {
			step = -1
		}
	case 2:
		start, end, step = params[0], params[1], 1
		if end < start {
			step = -1
		}
	case 3:
		start, step, end = params[0], params[1], params[2]
		if end < start && step > 0 {
			return "", nil
		}
	default:
		return "", nil
	}
	inc := 1
	if end < start {
		inc = -1
	}
	v, err := boundedUntilStep(start, end+inc, step)
	if err != nil {
		return "", fmt.Errorf("seq: more than %d numbers", maxSeq)
	}
	parts := make([]string, len(v))
	for i, n := range v {
		parts[i] = fmt.Sprint(n)
	}
	return strings.Join(parts, " "), nil
}
