package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// SizeForms tells how to write a size.
const SizeForms = "write a number of bytes, or a number with a unit: Ki, Mi, Gi, Ti (k, m, g, t mean the same), e.g. 2Gi, 512Mi, 1.5Gi"

// DurationForms tells how to write a duration.
const DurationForms = "write a number with a unit: ms, s, m, h, e.g. 90s, 2m, 1m30s"

// sizeShift maps an accepted unit to its power of two. Single letters follow
// Docker (`--memory 2g` is 2 GiB), so "2g" and "2Gi" are the same size.
var sizeShift = map[string]uint{
	"":  0,
	"k": 10, "K": 10, "Ki": 10,
	"m": 20, "M": 20, "Mi": 20,
	"g": 30, "G": 30, "Gi": 30,
	"t": 40, "T": 40, "Ti": 40,
}

var decimalRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

// ParseSize parses a byte count: plain bytes ("1073741824") or a number with
// a binary unit ("2Gi", "512Mi", "1.5Gi"; "2g", "512m" mean the same). A
// fraction is rounded up to a whole byte. Negative sizes, spaces inside and
// other units are refused with a Problem whose Hint lists the accepted forms.
func ParseSize(s string) (Size, error) {
	n, err := parseSize(s)
	if err != errNotSize {
		return n, err
	}
	hint := SizeForms
	if g, ok := guessSize(s); ok {
		hint = fmt.Sprintf("did you mean %q? ", g) + hint
	}
	msg := fmt.Sprintf("%q is not a size", s)
	if t := strings.TrimSpace(s); strings.HasPrefix(t, "-") {
		if _, err := parseSize(t[1:]); err == nil {
			msg = fmt.Sprintf("%q is negative", s)
		}
	}
	return 0, Problem{Msg: msg, Hint: hint}
}

// errNotSize is parseSize's answer for text that is no size at all; ParseSize
// turns it into a Problem with a guess at what was meant.
var errNotSize = errors.New("not a size")

func parseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errNotSize
	}
	num, unit := t, ""
	if i := strings.IndexFunc(t, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.') }); i >= 0 {
		num, unit = t[:i], t[i:]
	}
	shift, ok := sizeShift[unit]
	if !ok || !decimalRE.MatchString(num) {
		return 0, errNotSize
	}
	tooLarge := Problem{Msg: fmt.Sprintf("%q is too large", s), Hint: "the largest size is 8191Pi; e.g. 2Gi"}
	if len(num) > 40 {
		return 0, tooLarge
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, errNotSize
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).Lsh(big.NewInt(1), shift)))
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if !r.IsInt() {
		if unit == "" {
			return 0, Problem{Msg: fmt.Sprintf("%q is not a whole number of bytes", s), Hint: "use a unit for fractions, e.g. 1.5Gi"}
		}
		n.Add(n, big.NewInt(1)) // round up to a whole byte
	}
	if !n.IsInt64() {
		return 0, tooLarge
	}
	return Size(n.Int64()), nil
}

// guessSize rewrites common near-misses ("2 GB", "512MB", "1gib") to the
// accepted form, when that form parses.
func guessSize(s string) (string, bool) {
	t := strings.Join(strings.Fields(s), "")
	i := strings.IndexFunc(t, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.') })
	if i <= 0 {
		return "", false
	}
	unit, ok := map[string]string{
		"b": "", "kb": "Ki", "kib": "Ki", "k": "Ki", "mb": "Mi", "mib": "Mi", "m": "Mi",
		"gb": "Gi", "gib": "Gi", "g": "Gi", "tb": "Ti", "tib": "Ti", "t": "Ti",
	}[strings.ToLower(t[i:])]
	if !ok {
		return "", false
	}
	g := t[:i] + unit
	if _, err := parseSize(g); err != nil || g == strings.TrimSpace(s) {
		return "", false
	}
	return g, true
}

var sizeUnits = []struct {
	shift uint
	name  string
}{{40, "Ti"}, {30, "Gi"}, {20, "Mi"}, {10, "Ki"}}

// String writes the size with the largest binary unit that divides it
// exactly ("2Gi", "512Mi"), else in bytes ("1000").
func (s Size) String() string {
	if s > 0 {
		for _, u := range sizeUnits {
			if s%(1<<u.shift) == 0 {
				return strconv.FormatInt(int64(s>>u.shift), 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// Bytes returns the size as a plain byte count.
func (s Size) Bytes() int64 { return int64(s) }

// MarshalText writes the size as String does.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses the size as ParseSize does.
func (s *Size) UnmarshalText(b []byte) error {
	n, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = n
	return nil
}

// MarshalJSON writes the size as a string, "2Gi".
func (s Size) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON accepts a string ("2Gi") or a number of bytes.
func (s *Size) UnmarshalJSON(b []byte) error {
	str, isNum, err := jsonScalar(b)
	if err != nil || str == "null" && isNum {
		return err
	}
	if isNum {
		n, err := strconv.ParseInt(str, 10, 64)
		if err != nil {
			return fmt.Errorf("size %s: want a whole number of bytes or a string such as \"2Gi\"", str)
		}
		*s = Size(n)
		return nil
	}
	return s.UnmarshalText([]byte(str))
}

// UnmarshalYAML accepts any scalar ParseSize accepts.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a size, e.g. 2Gi", n.Line)
	}
	return s.UnmarshalText([]byte(n.Value))
}

// ParseDuration parses a Go duration ("90s", "2m", "1m30s"); a bare number
// is refused with a hint to add a unit.
func ParseDuration(s string) (Duration, error) {
	t := strings.TrimSpace(s)
	d, err := time.ParseDuration(t)
	if err == nil {
		return Duration(d), nil
	}
	hint := DurationForms
	if _, err := strconv.ParseFloat(t, 64); err == nil {
		hint = fmt.Sprintf("did you mean %q? a number needs a unit; ", t+"s") + hint
	}
	return 0, Problem{Msg: fmt.Sprintf("%q is not a duration", s), Hint: hint}
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String writes d as time.Duration does, "2m0s".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the duration as String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses the duration as ParseDuration does.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalJSON writes the duration as a string, "2m0s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON accepts a string ("2m", "90s") or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	str, isNum, err := jsonScalar(b)
	if err != nil || str == "null" && isNum {
		return err
	}
	if isNum {
		n, err := strconv.ParseInt(str, 10, 64)
		if err != nil {
			return fmt.Errorf("duration %s: want whole nanoseconds or a string such as \"2m\"", str)
		}
		*d = Duration(n)
		return nil
	}
	return d.UnmarshalText([]byte(str))
}

// UnmarshalYAML accepts any scalar ParseDuration accepts.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration, e.g. 2m", n.Line)
	}
	return d.UnmarshalText([]byte(n.Value))
}

// jsonScalar returns a JSON string's contents, or the text of a number or
// null (isNum true).
func jsonScalar(b []byte) (s string, isNum bool, err error) {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		err = json.Unmarshal(b, &s)
		return s, false, err
	}
	return string(b), true, nil
}
