// Command testsummary runs go test with -json in one or more modules,
// prints what plain go test would (each failing test's output, an "ok"
// line per passing package), and ends with a summary: the name of every
// test that failed, with the lines of its output that give a seed or a
// replay command (TestChaos's seed), and every package that failed
// without a failing test (a build error, a panic, a timeout). make test
// runs it, so a failure's name is in the last lines of a CI log rather
// than lost above a log line. It exits 1 if anything failed.
//
//	go run ./scripts/testsummary [-go go] -- DIR GO-TEST-ARGS... [-- DIR GO-TEST-ARGS...]
//
// Each "--" starts a run: go test -json GO-TEST-ARGS... in directory DIR.
// The runs follow one another, all of them, whatever the earlier ones gave.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
)

func main() {
	goCmd := flag.String("go", "go", "the go command")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: testsummary [-go go] -- DIR GO-TEST-ARGS... [-- DIR GO-TEST-ARGS...]")
		flag.PrintDefaults()
	}
	flag.Parse() // consumes the first "--"
	runs, err := splitRuns(flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		flag.Usage()
		os.Exit(2)
	}
	s := newSummary(os.Stdout)
	for _, r := range runs {
		before := s.failures()
		cmd := exec.Command(*goCmd, append([]string{"test", "-json"}, r.args...)...)
		cmd.Dir = r.dir
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err == nil {
			err = cmd.Start()
		}
		if err == nil {
			err = errors.Join(s.read(out), cmd.Wait())
		}
		if err != nil && s.failures() == before {
			s.errors = append(s.errors, fmt.Sprintf("go test %s (in %s): %v", strings.Join(r.args, " "), r.dir, err))
		}
	}
	if !s.finish() {
		os.Exit(1)
	}
}

// run is one go test invocation: its directory and arguments.
type run struct {
	dir  string
	args []string
}

// splitRuns parses "DIR ARGS... -- DIR ARGS...".
func splitRuns(args []string) ([]run, error) {
	runs := []run{{}}
	for _, a := range args {
		r := &runs[len(runs)-1]
		switch {
		case a == "--":
			runs = append(runs, run{})
		case r.dir == "":
			r.dir = a
		default:
			r.args = append(r.args, a)
		}
	}
	for _, r := range runs {
		if r.dir == "" {
			return nil, fmt.Errorf("a run without a directory")
		}
	}
	return runs, nil
}

// event is a line of go test -json (go doc test2json).
type event struct {
	Action      string
	Package     string
	Test        string
	Output      string
	ImportPath  string // of build-output
	FailedBuild string
}

// summary prints a run's output as it comes and keeps what failed.
type summary struct {
	w io.Writer
	// output holds each running test's lines (by package and name), and
	// each package's own under the name "".
	output map[[2]string][]string
	failed []failure
	errors []string // packages and runs that failed without a failing test
}

// failure is a test that failed, with the lines of its output that give a
// seed or a replay command.
type failure struct {
	pkg, test string
	notes     []string
}

// notable matches the output lines a failed test's summary repeats.
var notable = regexp.MustCompile(`(?i)\bseeds? \d|\breplay\b`)

// maxNotes bounds the lines repeated for one test.
const maxNotes = 3

func newSummary(w io.Writer) *summary {
	return &summary{w: w, output: make(map[[2]string][]string)}
}

// read handles go test -json output until its end. A line may be of any
// length (a test may log megabytes at once): stopping early would leave
// go test blocked on a full pipe.
func (s *summary) read(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			var e event
			if json.Unmarshal(line, &e) != nil || e.Action == "" {
				s.w.Write(line) // not an event: go's own message
			} else {
				s.handle(e)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (s *summary) handle(e event) {
	key := [2]string{e.Package, e.Test}
	switch e.Action {
	case "build-output":
		fmt.Fprint(s.w, e.Output)
	case "build-fail":
		s.errors = append(s.errors, e.ImportPath+": build failed")
	case "output":
		if e.Test != "" && strings.HasPrefix(e.Output, "=== ") {
			return // === RUN, PAUSE, CONT, NAME: -v's, not plain go test's
		}
		s.output[key] = append(s.output[key], e.Output)
	case "pass", "skip":
		if e.Test == "" {
			// plain go test says "ok" alone, without -v's "PASS"
			s.output[key] = slices.DeleteFunc(s.output[key], func(l string) bool { return l == "PASS\n" })
			s.printPackage(e.Package)
		}
		delete(s.output, key)
	case "fail":
		if e.Test == "" {
			s.packageFailed(e)
			return
		}
		lines := s.output[key]
		delete(s.output, key)
		for _, l := range lines {
			fmt.Fprint(s.w, l)
		}
		s.failed = append(s.failed, failure{pkg: e.Package, test: e.Test, notes: notes(lines)})
	}
}

// packageFailed prints what a failed package left: the output of tests
// still running (at a panic or a timeout), then its own.
func (s *summary) packageFailed(e event) {
	failedTests := slices.ContainsFunc(s.failed, func(f failure) bool { return f.pkg == e.Package })
	var running []string
	for key := range s.output {
		if key[0] == e.Package && key[1] != "" {
			running = append(running, key[1])
		}
	}
	slices.Sort(running)
	for _, name := range running {
		key := [2]string{e.Package, name}
		lines := s.output[key]
		delete(s.output, key)
		fmt.Fprintf(s.w, "--- still running when %s failed: %s\n", e.Package, name)
		for _, l := range lines {
			fmt.Fprint(s.w, l)
		}
		s.failed = append(s.failed, failure{pkg: e.Package, test: name + " (still running)", notes: notes(lines)})
	}
	s.printPackage(e.Package)
	switch {
	case e.FailedBuild != "":
		s.errors = append(s.errors, e.Package+": build failed ("+e.FailedBuild+")")
	case !failedTests && len(running) == 0:
		s.errors = append(s.errors, e.Package+": failed without a failing test (see its output above)")
	}
}

// printPackage prints and forgets a package's own output.
func (s *summary) printPackage(pkg string) {
	key := [2]string{pkg, ""}
	for _, l := range s.output[key] {
		fmt.Fprint(s.w, l)
	}
	delete(s.output, key)
}

// failures counts what has failed so far.
func (s *summary) failures() int { return len(s.failed) + len(s.errors) }

// notes returns the lines of lines worth repeating in the summary.
func notes(lines []string) []string {
	var out []string
	for _, l := range lines {
		if l = strings.TrimSpace(l); notable.MatchString(l) && !slices.Contains(out, l) && len(out) < maxNotes {
			out = append(out, l)
		}
	}
	return out
}

// finish prints the summary, last, and reports whether everything passed.
func (s *summary) finish() bool {
	fmt.Fprintln(s.w)
	if len(s.failed) == 0 && len(s.errors) == 0 {
		fmt.Fprintln(s.w, "testsummary: every test passed")
		return true
	}
	fmt.Fprintf(s.w, "testsummary: %d failed tests, %d other failures\n", len(s.failed), len(s.errors))
	for _, f := range s.failed {
		fmt.Fprintf(s.w, "--- FAIL: %s (%s)\n", f.test, f.pkg)
		for _, n := range f.notes {
			fmt.Fprintf(s.w, "        %s\n", n)
		}
	}
	for _, e := range s.errors {
		fmt.Fprintf(s.w, "FAIL: %s\n", e)
	}
	return false
}
