package auth

import (
	"regexp"
	"testing"
)

// matchPatterns are expressions of each form, and some that are none.
var matchPatterns = []string{
	".*", "(?s).*", "", "(.*)", "^.*$", "^(?:.*)$", `^tenant_a\.`, `\Atenant_a\.`, `^tenant_a\..*`, `^tenant_a\..*$`,
	"^archive$", "^(archive)$", "orders", "(?i)orders", "^$", "a|b", "(?m)^a", "^a.*b$", "^a+", `^tenant_[ab]\.`, "^\ufffd",
	"x\ufffd", "^.*", ".*$", "^a(?s).*$", "^(a)(.*)$",
}

// matchSubjects are names and strings no name is.
var matchSubjects = []string{
	"", "tenant_a.orders", "tenant_a.", "tenant_a", "xtenant_a.orders", "archive", "archive#ephemeral", "old_orders",
	"ORDERS", "a", "ab", "a\nb", "tenant_a.\n", "\n", "\xff", "\xffa", "x\xff",
}

// TestMatcher: every form matches as regexp.MatchString, and the common
// ones do not use the engine.
func TestMatcher(t *testing.T) {
	for _, p := range matchPatterns {
		m, err := newMatcher(p)
		if err != nil {
			t.Fatal(err)
		}
		re := regexp.MustCompile(p)
		for _, s := range matchSubjects {
			if got, want := m.match(s), re.MatchString(s); got != want {
				t.Errorf("%q (form %d) on %q: got %v; want %v", p, m.kind, s, got, want)
			}
		}
	}
	for p, kind := range map[string]int{".*": matchAll, "^.*$": matchLine, `^tenant_a\.`: matchPrefix, `^tenant_a\..*$`: matchPrefixLine,
		"^archive$": matchExact, "orders": matchContains, "(?i)orders": matchRegexp, "^\ufffd": matchRegexp} {
		if m, _ := newMatcher(p); m.kind != kind {
			t.Errorf("%q: form %d; want %d", p, m.kind, kind)
		}
	}
}

// FuzzMatcher: a matcher agrees with regexp.MatchString on any expression
// that compiles and any string.
func FuzzMatcher(f *testing.F) {
	for i, p := range matchPatterns {
		f.Add(p, matchSubjects[i%len(matchSubjects)])
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		m, err := newMatcher(pattern)
		if err != nil {
			return
		}
		if got, want := m.match(s), m.re.MatchString(s); got != want {
			t.Fatalf("%q (form %d, %q) on %q: got %v; want %v", pattern, m.kind, m.lit, s, got, want)
		}
	})
}

// BenchmarkMatcher compares a check by the regexp engine with the
// matcher's, for the forms auth servers write.
func BenchmarkMatcher(b *testing.B) {
	for _, p := range []string{".*", `^tenant_a\.`, "^archive$", `^tenant_[ab]\.`} {
		m, _ := newMatcher(p)
		b.Run(p+"/regexp", func(b *testing.B) {
			for b.Loop() {
				m.re.MatchString("tenant_a.orders")
			}
		})
		b.Run(p+"/matcher", func(b *testing.B) {
			for b.Loop() {
				m.match("tenant_a.orders")
			}
		})
	}
}
