package auth

import (
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode/utf8"
)

// matcher is a compiled topic or channel expression. It matches exactly as
// regexp.MatchString does (FuzzMatcher checks it), but the forms auth
// servers write (".*", "^tenant_a\.", "^tenant_a\..*$", "^archive$", a
// plain word) without running the regexp engine: a /lookup checks one
// topic and each of its channels, and the engine takes 220 to 380 ns for
// an unanchored ".*", 85 to 130 ns for "^tenant_a\.", where the matcher
// takes 5 to 7 (BenchmarkMatcher, on a loaded 2-CPU machine). Read and
// the filters of a /lookup of five channels went from some 9 us to 0.55 us
// (BenchmarkRead).
type matcher struct {
	re   *regexp.Regexp
	kind int
	lit  string
}

// The forms of matcher.kind.
const (
	matchRegexp     = iota // anything else: re.MatchString
	matchAll               // ".*", "": every string
	matchLine              // "^.*$": every string without a newline
	matchPrefix            // "^lit", "^lit.*"
	matchPrefixLine        // "^lit.*$": lit, then no newline
	matchExact             // "^lit$"
	matchContains          // "lit"
)

// newMatcher compiles pattern as nsqd does (regexp.Compile) and finds its
// form.
func newMatcher(pattern string) (matcher, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return matcher{}, err
	}
	m := matcher{re: re}
	if parsed, err := syntax.Parse(pattern, syntax.Perl); err == nil {
		m.kind, m.lit = form(parsed.Simplify())
	}
	if strings.ContainsRune(m.lit, utf8.RuneError) {
		m.kind = matchRegexp // the engine reads an invalid byte as U+FFFD: strings do not
	}
	return m, nil
}

// form returns the form of a parsed expression, and its literal.
func form(re *syntax.Regexp) (int, string) {
	re = uncapture(re)
	switch {
	case re.Op == syntax.OpEmptyMatch, isStar(re):
		return matchAll, ""
	case isLiteral(re):
		return matchContains, string(re.Rune)
	case re.Op != syntax.OpConcat || len(re.Sub) < 2 || uncapture(re.Sub[0]).Op != syntax.OpBeginText:
		return matchRegexp, ""
	}
	sub := make([]*syntax.Regexp, 0, len(re.Sub)-1)
	for _, s := range re.Sub[1:] {
		sub = append(sub, uncapture(s))
	}
	end := sub[len(sub)-1].Op == syntax.OpEndText
	if end {
		sub = sub[:len(sub)-1]
	}
	var lit string
	if len(sub) > 0 && isLiteral(sub[0]) {
		lit, sub = string(sub[0].Rune), sub[1:]
	}
	switch {
	case len(sub) == 0 && lit != "" && !end:
		return matchPrefix, lit
	case len(sub) == 0 && lit != "" && end:
		return matchExact, lit
	case len(sub) == 1 && sub[0].Op == syntax.OpStar && uncapture(sub[0].Sub[0]).Op == syntax.OpAnyCharNotNL:
		switch {
		case !end:
			return matchPrefix, lit // "^lit.*": the star may match nothing
		case lit == "":
			return matchLine, ""
		}
		return matchPrefixLine, lit
	}
	return matchRegexp, ""
}

func uncapture(re *syntax.Regexp) *syntax.Regexp {
	for re.Op == syntax.OpCapture && len(re.Sub) == 1 {
		re = re.Sub[0]
	}
	return re
}

// isStar reports whether re is ".*" or "(?s).*", which match every string
// unanchored (at its start, the star matching nothing if need be).
func isStar(re *syntax.Regexp) bool {
	if re.Op != syntax.OpStar {
		return false
	}
	op := uncapture(re.Sub[0]).Op
	return op == syntax.OpAnyCharNotNL || op == syntax.OpAnyChar
}

// isLiteral reports whether re is a case-sensitive literal.
func isLiteral(re *syntax.Regexp) bool {
	return re.Op == syntax.OpLiteral && re.Flags&syntax.FoldCase == 0
}

// match reports whether s matches, as m.re.MatchString(s).
func (m *matcher) match(s string) bool {
	switch m.kind {
	case matchAll:
		return true
	case matchLine:
		return strings.IndexByte(s, '\n') < 0
	case matchPrefix:
		return strings.HasPrefix(s, m.lit)
	case matchPrefixLine:
		return strings.HasPrefix(s, m.lit) && strings.IndexByte(s[len(m.lit):], '\n') < 0
	case matchExact:
		return s == m.lit
	case matchContains:
		return strings.Contains(s, m.lit)
	}
	return m.re.MatchString(s)
}
