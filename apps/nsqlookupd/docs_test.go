package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/lookupd/nsqlookupd/nsqlookupd"
)

// The documentation's promises that code can check: docs/configuration.md
// holds the one flags table, and every relative link of README.md and
// docs/ resolves.

const repoRoot = "../.."

// TestFlagsTable: the flags table names exactly the flags -h prints.
func TestFlagsTable(t *testing.T) {
	var help bytes.Buffer
	fs := nsqlookupdFlagSet(nsqlookupd.NewOptions())
	fs.SetOutput(&help)
	fs.PrintDefaults()
	var printed []string
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(help.String(), -1) {
		printed = append(printed, m[1])
	}

	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	var table []string
	for _, m := range regexp.MustCompile("(?m)^\\| `--([a-z0-9-]+)` \\|").FindAllSubmatch(doc, -1) {
		table = append(table, string(m[1]))
	}
	slices.Sort(printed)
	slices.Sort(table)
	if len(printed) == 0 || !slices.Equal(printed, table) {
		t.Fatalf("docs/configuration.md's flags table and nsqlookupd -h differ:\n\ttable: %v\n\t-h:    %v", table, printed)
	}
}

var (
	mdLink    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdHeading = regexp.MustCompile(`(?m)^#{1,6} (.+)$`)
	codeBlock = regexp.MustCompile("(?s)```.*?```")
)

// anchors returns the GitHub anchors of a Markdown file's headings.
func anchors(md string) map[string]bool {
	out := map[string]bool{}
	for _, m := range mdHeading.FindAllStringSubmatch(codeBlock.ReplaceAllString(md, ""), -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(m[1])) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 0x7f:
				b.WriteRune(r)
			}
		}
		out[b.String()] = true
	}
	return out
}

// TestDocLinks: every relative link in README.md and docs/*.md names a
// file of the repository, and a heading of it when it has an anchor.
func TestDocLinks(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	files = append(files, filepath.Join(repoRoot, "README.md"))
	checked := 0
	for _, file := range files {
		md, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(codeBlock.ReplaceAllString(string(md), ""), -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			checked++
			path, anchor, _ := strings.Cut(link, "#")
			target := file
			if path != "" {
				target = filepath.Join(filepath.Dir(file), path)
			}
			body, err := os.ReadFile(target)
			if info, serr := os.Stat(target); serr == nil && info.IsDir() {
				err = nil
			} else if err != nil {
				t.Errorf("%s: link %q: %v", file, link, err)
				continue
			}
			if anchor != "" && !anchors(string(body))[anchor] {
				t.Errorf("%s: link %q: no heading #%s in %s", file, link, anchor, target)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no relative link found: the pattern is broken")
	}
}
