package interop

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestProfiling uses the daemon's /debug/pprof the way operators do: curl
// for goroutine dumps, and go tool pprof for CPU and heap profiles,
// including a PDF rendering (which needs graphviz).
func TestProfiling(t *testing.T) {
	t.Parallel()
	d := startLookupd(t)
	// Live registration connections make the goroutine dump more telling.
	startNSQD(t, d.TCPAddr)

	resp, err := httpClient.Get(d.url("/debug/pprof/goroutine?debug=2"))
	if err != nil {
		t.Fatal(err)
	}
	dump, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !bytes.Contains(dump, []byte("goroutine ")) || !bytes.Contains(dump, []byte("created by")) {
		t.Errorf("goroutine?debug=2: %s, want full stacks; got:\n%.2000s", resp.Status, dump)
	}

	pprof := newPprof(t)
	for _, path := range []string{"/debug/pprof/profile?seconds=1", "/debug/pprof/heap"} {
		out := pprof.run(t, "-top", d.url(path))
		if len(bytes.TrimSpace(out)) == 0 {
			t.Errorf("go tool pprof -top %s: empty output", path)
		}
	}

	if _, err := exec.LookPath("dot"); err != nil {
		t.Fatal("graphviz's dot is not on PATH, so go tool pprof -pdf cannot work: " +
			"run scripts/install-test-deps.sh (at the repository root) first")
	}
	pdf := filepath.Join(t.TempDir(), "cpu.pdf")
	pprof.run(t, "-pdf", "-output", pdf, d.url("/debug/pprof/profile?seconds=1"))
	b, err := os.ReadFile(pdf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("%PDF")) {
		t.Errorf("go tool pprof -pdf wrote %d bytes starting %q, want a PDF", len(b), b[:min(len(b), 16)])
	}
}

// pprofRunner runs go tool pprof with HOME and PPROF_TMPDIR in a temporary
// directory, so that it saves nothing outside it.
type pprofRunner struct {
	env []string
}

func newPprof(t *testing.T) *pprofRunner {
	t.Helper()
	// go tool builds pprof on demand into the build cache: keep the real one,
	// which a changed HOME would otherwise move.
	gocache, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil {
		t.Fatalf("go env GOCACHE: %v", err)
	}
	home := t.TempDir()
	return &pprofRunner{env: append(os.Environ(),
		"HOME="+home,
		"PPROF_TMPDIR="+home,
		"GOCACHE="+strings.TrimSpace(string(gocache)),
	)}
}

func (p *pprofRunner) run(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("go", append([]string{"tool", "pprof"}, args...)...)
	cmd.Env = p.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(cmd.Args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes()
}

// TestProfilingHTTPS: the profiling recipes over HTTPS, with TLS required:
// a client trusting the CA reads a goroutine dump, and go tool pprof reads
// a CPU profile and the heap. go tool pprof fetches with its own HTTP
// client on the system roots and ignores -tls_ca (only the standalone
// github.com/google/pprof reads it), so it is pointed at the CA with
// SSL_CERT_FILE, as the README says.
func TestProfilingHTTPS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "interop CA")
	lt := newLookupdTLS(t, ca, "--tls-required")
	d := startLookupdTLS(t, lt)
	base := "https://" + d.HTTPSAddr

	resp, err := lt.client.Get(base + "/debug/pprof/goroutine?debug=2")
	if err != nil {
		t.Fatal(err)
	}
	dump, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !bytes.Contains(dump, []byte("created by")) {
		t.Errorf("goroutine?debug=2 over HTTPS: %s, want full stacks; got:\n%.2000s", resp.Status, dump)
	}

	pprof := newPprof(t)
	pprof.env = append(pprof.env, "SSL_CERT_FILE="+ca.CertFile)
	for _, path := range []string{"/debug/pprof/profile?seconds=1", "/debug/pprof/heap"} {
		out := pprof.run(t, "-top", base+path)
		if !bytes.Contains(out, []byte("flat%")) {
			t.Errorf("SSL_CERT_FILE=%s go tool pprof -top %s: no profile table in:\n%s", ca.CertFile, path, out)
		}
	}
}
