package nsqlookupd

import (
	"encoding/json"
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
