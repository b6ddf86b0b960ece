package interop

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// contribPrometheus holds the example scrape config and alert rules.
var contribPrometheus = filepath.Join("..", "..", "contrib", "prometheus")

// TestPrometheus has a real Prometheus scrape the daemon, with two real nsqd
// registered, and load the alert rules of contrib/prometheus; promtool
// checks a scrape and the contrib files, and runs the rules' unit tests.
func TestPrometheus(t *testing.T) {
	t.Parallel()
	promBin, promtool := lookTool(t, "prometheus"), lookTool(t, "promtool")
	c := startCluster(t) // two producers, two topics

	resp, err := httpClient.Get(c.lookupd.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	scraped, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %s, %v", resp.Status, err)
	}
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = bytes.NewReader(scraped)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics on a scrape: %v\n%s", err, out)
	}
	rules, err := filepath.Abs(filepath.Join(contribPrometheus, "nsqlookupd.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"check", "config", filepath.Join(contribPrometheus, "prometheus.yml")},
		{"check", "rules", rules},
		{"test", "rules", filepath.Join(contribPrometheus, "nsqlookupd.rules.test.yml")},
	} {
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	p := startPrometheus(t, promBin, c.lookupd.HTTPAddr, rules)
	for query, want := range map[string]string{
		`up{job="nsqlookupd"}`: "1",
		"nsqlookupd_producers": "2",
		"nsqlookupd_topics":    "2",
	} {
		eventually(t, 30*time.Second, func() (bool, string) {
			got, err := p.query(query)
			if err != nil {
				return false, err.Error()
			}
			return got == want, fmt.Sprintf("%s: got %q; want %q", query, got, want)
		})
	}
	// Every rule of contrib/prometheus has been evaluated, without error.
	eventually(t, 30*time.Second, func() (bool, string) {
		return p.rulesHealthy()
	})
}

// lookTool returns the path of a tool the tests need from the system,
// failing the test if it is missing.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not on PATH: run scripts/install-test-deps.sh (at the repository root) first", name)
	}
	return path
}

// prometheus is a Prometheus server on loopback.
type prometheus struct {
	addr string
}

// startPrometheus runs a Prometheus that scrapes target every second and
// evaluates rules, with its config and data in a temporary directory. It
// is stopped, by PID, and its directory removed when the test ends; its
// output is logged if the test failed.
func startPrometheus(t *testing.T, bin, target, rules string) *prometheus {
	t.Helper()
	dir := t.TempDir()
	config := filepath.Join(dir, "prometheus.yml")
	err := os.WriteFile(config, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: nsqlookupd
    static_configs:
      - targets: [%q]
`, rules, target)), 0o644)
	if err != nil {
		t.Fatal(err)
	}

	var logs syncBuffer
	var cmd *exec.Cmd
	p := &prometheus{}
	for attempt := 0; attempt < 3; attempt++ {
		// Another test may take the port between freeAddr and the listen.
		p.addr = freeAddr(t)
		cmd = exec.Command(bin,
			"--config.file="+config,
			"--storage.tsdb.path="+filepath.Join(dir, "data"),
			"--web.listen-address="+p.addr,
		)
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting %s: %v", bin, err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		// Registered after t.TempDir: runs before the directory is removed.
		t.Cleanup(func() {
			stopProcess(t, cmd.Process, exited)
			if t.Failed() {
				t.Logf("prometheus output:\n%s", logs.String())
			}
		})
		if err = p.waitReady(exited); err == nil {
			return p
		}
		stopProcess(t, cmd.Process, exited)
	}
	t.Fatalf("prometheus did not start: %v\n%s", err, logs.String())
	return nil
}

// waitReady waits until the server answers /-/ready, or exits.
func (p *prometheus) waitReady(exited chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			exited <- err // for stopProcess
			return fmt.Errorf("exited: %v", err)
		default:
		}
		resp, err := httpClient.Get("http://" + p.addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready within 30s")
}

// stopProcess sends SIGTERM to proc and waits for it, then SIGKILL after
// 10 seconds. exited yields the process's Wait result once.
func stopProcess(t *testing.T, proc *os.Process, exited chan error) {
	select {
	case err := <-exited:
		exited <- err
		return
	default:
	}
	_ = proc.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		exited <- err
	case <-time.After(10 * time.Second):
		t.Errorf("prometheus (pid %d) still running 10s after SIGTERM: killing it", proc.Pid)
		_ = proc.Kill()
		exited <- <-exited
	}
}

// query returns the value of an instant query that yields one sample.
func (p *prometheus) query(q string) (string, error) {
	var a struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if _, err := getJSON("http://"+p.addr+"/api/v1/query?query="+url.QueryEscape(q), &a); err != nil {
		return "", err
	}
	if a.Status != "success" || len(a.Data.Result) != 1 {
		return "", fmt.Errorf("query %s: status %q, %d samples; want one", q, a.Status, len(a.Data.Result))
	}
	v, ok := a.Data.Result[0].Value[1].(string)
	if !ok {
		return "", fmt.Errorf("query %s: value %v", q, a.Data.Result[0].Value)
	}
	return v, nil
}

// rulesHealthy reports whether every loaded rule has been evaluated
// without error, and how it is not.
func (p *prometheus) rulesHealthy() (bool, string) {
	var a struct {
		Data struct {
			Groups []struct {
				Name  string
				Rules []struct {
					Name      string
					Health    string
					LastError string
				}
			}
		}
	}
	if _, err := getJSON("http://"+p.addr+"/api/v1/rules", &a); err != nil {
		return false, err.Error()
	}
	n := 0
	for _, g := range a.Data.Groups {
		for _, r := range g.Rules {
			if r.Health != "ok" {
				b, _ := json.Marshal(r)
				return false, fmt.Sprintf("rule %s: %s", r.Name, b)
			}
			n++
		}
	}
	if n == 0 {
		return false, "no rules loaded"
	}
	return true, ""
}
