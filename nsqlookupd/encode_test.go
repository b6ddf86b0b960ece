package nsqlookupd

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestAppendJSONString: names are written as they are when encoding/json
// would write them so, and escaped exactly as it does otherwise.
func TestAppendJSONString(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "topic-1.a_b#ephemeral", `q"uote`, `back\slash`, "<tag>&", "é", "\x00\n"} {
		want, _ := json.Marshal(s)
		if got := appendJSONString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Errorf("appendJSONString(%q) = %s; want x%s", s, got, want)
		}
	}
	if got := appendNames(nil, []string{"a", `b"`}); string(got) != `["a","b\""]` {
		t.Errorf("appendNames = %s", got)
	}
}

// TestCompareDebugKeys: topic names sort as their /debug keys do.
func TestCompareDebugKeys(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"a", "a", 0},
		{"a", "b", -1},
		{"a", "a.b", 1},  // "a:" after "a.b:": '.' < ':'
		{"a.b", "a", -1}, // and the other way round
		{"a", "aa", -1},  // 'a' > ':'
		{"aa", "a", 1},
		{"a", "a-1", 1}, // '-' < ':'
		{"A", "a", -1},
	} {
		if got := compareDebugKeys(tt.a, tt.b); got != tt.want {
			t.Errorf("compareDebugKeys(%q, %q) = %d; want %d", tt.a, tt.b, got, tt.want)
		}
		if got, want := compareDebugKeys(tt.a, tt.b), strings.Compare(tt.a+":", tt.b+":"); got != want {
			t.Errorf("compareDebugKeys(%q, %q) = %d; the keys compare %d", tt.a, tt.b, got, want)
		}
	}
}
