package protocol

import (
	"regexp"
	"strings"
	"testing"
)

// validName is the name rule of docs/wire.md, Data model, as v1.3.0
// writes it: a regular expression plus a length of 1 to 64. isValidName is
// a hand-written equivalent; the tests below hold it to this reference.
var validName = regexp.MustCompile(`^[.a-zA-Z0-9_-]+(#ephemeral)?$`)

func referenceValid(name string) bool {
	return len(name) >= 1 && len(name) <= MaxNameLength && validName.MatchString(name)
}

func TestNames(t *testing.T) {
	long64 := strings.Repeat("a", 64)
	tests := []struct {
		name string
		want bool
	}{
		{"", false},
		{"a", true},
		{"A.b_c-9", true},
		{long64, true},
		{long64 + "b", false},
		{strings.Repeat("a", 54) + "#ephemeral", true},  // 64 with the suffix
		{strings.Repeat("a", 55) + "#ephemeral", false}, // 65 with the suffix
		{"#ephemeral", false},
		{"a#ephemeral", true},
		{"a#ephemeral#ephemeral", false},
		{"a#ephemeralx", false},
		{"a#Ephemeral", false},
		{"a b", false},
		{"a\x00", false},
		{"a\n", false},
		{"bad!", false},
		{"é", false},
		{"a/b", false},
		{"*", false},
	}
	for _, tt := range tests {
		if got := IsValidTopicName(tt.name); got != tt.want {
			t.Errorf("IsValidTopicName(%q): got %v; want %v", tt.name, got, tt.want)
		}
		if got := IsValidChannelName(tt.name); got != tt.want {
			t.Errorf("IsValidChannelName(%q): got %v; want %v", tt.name, got, tt.want)
		}
		if got := referenceValid(tt.name); got != tt.want {
			t.Errorf("reference(%q): got %v; want %v (the table is wrong)", tt.name, got, tt.want)
		}
	}
}

func TestIsEphemeral(t *testing.T) {
	for name, want := range map[string]bool{
		"a#ephemeral": true, "#ephemeral": true, "a": false, "a#ephemeralx": false, "": false,
	} {
		if got := IsEphemeral(name); got != want {
			t.Errorf("IsEphemeral(%q): got %v; want %v", name, got, want)
		}
	}
}

// FuzzNames checks the hand-written name check against the regular
// expression, for topics and channels alike.
func FuzzNames(f *testing.F) {
	for _, s := range []string{
		"", "a", "t#ephemeral", "#ephemeral", "a#ephemeral#ephemeral",
		strings.Repeat("x", 64), strings.Repeat("x", 55) + "#ephemeral",
		"bad!", "a\x00b", "\xff", "é", "a b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		want := referenceValid(name)
		if got := IsValidTopicName(name); got != want {
			t.Fatalf("IsValidTopicName(%q): got %v; want %v", name, got, want)
		}
		if got := IsValidChannelName(name); got != want {
			t.Fatalf("IsValidChannelName(%q): got %v; want %v", name, got, want)
		}
		if got, want := IsEphemeral(name), strings.HasSuffix(name, "#ephemeral"); got != want {
			t.Fatalf("IsEphemeral(%q): got %v; want %v", name, got, want)
		}
	})
}
