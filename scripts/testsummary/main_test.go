package main

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

// summarize runs the canned go test -json output in testdata/name through
// a summary and returns what it printed, as lines, and whether it passed.
func summarize(t *testing.T, names ...string) ([]string, bool) {
	t.Helper()
	var out bytes.Buffer
	s := newSummary(&out)
	for _, name := range names {
		f, err := os.Open("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		err = s.read(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	passed := s.finish()
	return strings.Split(strings.TrimRight(out.String(), "\n"), "\n"), passed
}

const fixture = "github.com/lookupd/nsqlookupd/scripts/testsummary/testdata/fixture"

// TestFailuresLast: the last lines name every failed test, with the seed
// and replay line of the one that logged them, after all of the output.
func TestFailuresLast(t *testing.T) {
	lines, passed := summarize(t, "fail.json")
	if passed {
		t.Fatal("finish: got passed; want failed")
	}
	want := []string{
		"testsummary: 4 failed tests, 0 other failures",
		"--- FAIL: TestTable/bad (" + fixture + ")",
		"--- FAIL: TestTable (" + fixture + ")",
		"--- FAIL: TestSeeded (" + fixture + ")",
		"        fixture_test.go:37: chaos: seed 7, 30 faults; replay: make chaos SEED=7 FAULTS=30",
		"--- FAIL: TestFails (" + fixture + ")",
	}
	if got := lines[max(len(lines)-len(want), 0):]; !slices.Equal(got, want) {
		t.Fatalf("last lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// the failed tests' output is shown as plain go test shows it; a
	// passing test's, and -json's "=== RUN" lines, are not
	text := strings.Join(lines, "\n")
	for _, s := range []string{"fixture_test.go:23: got 1; want 2", "--- FAIL: TestFails (", "FAIL\t" + fixture} {
		if !strings.Contains(text, s) {
			t.Errorf("output lacks %q:\n%s", s, text)
		}
	}
	for _, s := range []string{"a line of a passing test", "=== RUN", `"Action"`} {
		if strings.Contains(text, s) {
			t.Errorf("output holds %q:\n%s", s, text)
		}
	}
}

// TestTimeoutNamesRunningTest: a package that times out ends no test with
// a failure; the test running then is named, with its seed.
func TestTimeoutNamesRunningTest(t *testing.T) {
	lines, passed := summarize(t, "timeout.json")
	if passed {
		t.Fatal("finish: got passed; want failed")
	}
	want := []string{
		"testsummary: 1 failed tests, 0 other failures",
		"--- FAIL: TestHangs (still running) (" + fixture + ")",
		"        fixture_test.go:43: chaos: seed 9, 30 faults; replay: make chaos SEED=9 FAULTS=30",
	}
	if got := lines[max(len(lines)-len(want), 0):]; !slices.Equal(got, want) {
		t.Fatalf("last lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if text := strings.Join(lines, "\n"); !strings.Contains(text, "panic: test timed out after 2s") {
		t.Errorf("output lacks the timeout's panic:\n%s", text)
	}
}

// TestPassing: a passing run prints its packages' ok lines and says so
// last; after a failing one, the summary still counts both.
func TestPassing(t *testing.T) {
	lines, passed := summarize(t, "pass.json")
	if !passed || len(lines) != 3 || !strings.HasPrefix(lines[0], "ok  \t"+fixture) || lines[len(lines)-1] != "testsummary: every test passed" {
		t.Fatalf("got passed %t and\n%s", passed, strings.Join(lines, "\n"))
	}
	lines, passed = summarize(t, "fail.json", "pass.json")
	if passed || !slices.Contains(lines, "testsummary: 4 failed tests, 0 other failures") {
		t.Fatalf("fail then pass: got passed %t and\n%s", passed, strings.Join(lines, "\n"))
	}
}

func TestSplitRuns(t *testing.T) {
	got, err := splitRuns([]string{".", "-race", "./...", "--", "test/interop", "-run", "X", "./..."})
	want := []run{{".", []string{"-race", "./..."}}, {"test/interop", []string{"-run", "X", "./..."}}}
	if err != nil || len(got) != 2 || got[0].dir != want[0].dir || !slices.Equal(got[0].args, want[0].args) ||
		got[1].dir != want[1].dir || !slices.Equal(got[1].args, want[1].args) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
	if _, err := splitRuns([]string{".", "--"}); err == nil {
		t.Fatal("a run without a directory: got no error")
	}
}

// TestLongLine: a line longer than the reader's buffer (a test that logs
// a megabyte at once) is read whole, and what follows it still counts.
func TestLongLine(t *testing.T) {
	long, _ := json.Marshal(event{Action: "output", Package: "p", Test: "TestBig", Output: strings.Repeat("x", 1<<20) + "\n"})
	in := string(long) + "\n" +
		`{"Action":"fail","Package":"p","Test":"TestBig"}` + "\n" +
		`{"Action":"fail","Package":"p"}` + "\n"
	var out bytes.Buffer
	s := newSummary(&out)
	if err := s.read(strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	if s.finish() || !strings.HasSuffix(out.String(), "--- FAIL: TestBig (p)\n") {
		t.Fatalf("got %d bytes ending %q; want TestBig's failure last", out.Len(), out.String()[max(out.Len()-100, 0):])
	}
}
