package config

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxNameLen is the longest group or user name (a DNS label).
const MaxNameLen = 63

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// NameRule describes valid group and user names.
const NameRule = `names use only lowercase letters a-z, digits 0-9 and "-", start with a letter or digit, do not end with "-", and have at most 63 characters`

// ValidName checks a group or user name (kind is "group" or "user"). Names
// are DNS-label safe and are never rewritten: a bad one is refused with a
// Problem (no position) whose Msg says what is wrong and whose Hint gives the
// rule and, when only letter case or underscores are off, the name to use.
func ValidName(kind, name string) error {
	if nameRE.MatchString(name) && !strings.HasSuffix(name, "-") {
		return nil
	}
	var reasons []string
	if name == "" {
		reasons = append(reasons, "it is empty")
	} else {
		if n := utf8.RuneCountInString(name); n > MaxNameLen {
			reasons = append(reasons, fmt.Sprintf("it has %d characters", n))
		}
		if strings.IndexFunc(name, unicode.IsUpper) >= 0 {
			reasons = append(reasons, "uppercase letters are not allowed")
		}
		var badChars []string
		for _, r := range name {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || unicode.IsUpper(r) {
				continue
			}
			q := strconv.Quote(string(r))
			if !slices.Contains(badChars, q) {
				badChars = append(badChars, q)
			}
		}
		if len(badChars) > 5 {
			badChars = append(badChars[:5], "…")
		}
		if len(badChars) > 0 {
			verb := " is"
			if len(badChars) > 1 {
				verb = " are"
			}
			reasons = append(reasons, strings.Join(badChars, ", ")+verb+" not allowed")
		}
		if strings.HasPrefix(name, "-") {
			reasons = append(reasons, `it starts with "-"`)
		}
		if strings.HasSuffix(name, "-") {
			reasons = append(reasons, `it ends with "-"`)
		}
	}
	hint := NameRule
	if fixed := strings.ReplaceAll(strings.ToLower(name), "_", "-"); fixed != name &&
		nameRE.MatchString(fixed) && !strings.HasSuffix(fixed, "-") {
		hint = fmt.Sprintf("did you mean %q? ", fixed) + hint
	}
	return Problem{
		Msg:  fmt.Sprintf("invalid %s name %q: %s", kind, name, strings.Join(reasons, "; ")),
		Hint: hint,
	}
}

// suggest returns the entry of valid closest to s: within edit distance 2,
// or one being a prefix of the other (case-insensitively).
func suggest(s string, valid []string) (string, bool) {
	ls := strings.ToLower(s)
	best, bestDist := "", -1
	for _, v := range valid {
		lv := strings.ToLower(v)
		d := levenshtein(ls, lv)
		prefix := len(ls) >= 2 && (strings.HasPrefix(lv, ls) || strings.HasPrefix(ls, lv))
		if d > 2 && !prefix {
			continue
		}
		if bestDist < 0 || d < bestDist {
			best, bestDist = v, d
		}
	}
	return best, bestDist >= 0
}

// levenshtein is the edit distance between a and b, in runes.
func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
