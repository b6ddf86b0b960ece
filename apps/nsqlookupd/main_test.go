package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/mreiferson/go-options"

	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/nsqlookupd"
)

// runAsMain makes the test binary run main() when re-executed by a test:
// the process then behaves exactly as the built nsqlookupd.
const runAsMain = "NSQLOOKUPD_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runAsMain) == "1" {
		os.Args = append([]string{"nsqlookupd"}, strings.Fields(os.Getenv(runAsMain+"_ARGS"))...)
		main()
		return
	}
	os.Exit(m.Run())
}

// daemonCmd returns a command running main with args.
func daemonCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), runAsMain+"=1", runAsMain+"_ARGS="+strings.Join(args, " "))
	return cmd
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nsqlookupd.cfg")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// resolve runs main's option resolution on args.
func resolve(t *testing.T, args ...string) (*nsqlookupd.Options, error) {
	t.Helper()
	opts := nsqlookupd.NewOptions()
	flagSet := nsqlookupdFlagSet(opts)
	if err := flagSet.Parse(args); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(flagSet.Lookup("config").Value.String(), opts)
	if err != nil {
		return nil, err
	}
	options.Resolve(opts, flagSet, cfg)
	return opts, nil
}

func TestDefaults(t *testing.T) {
	opts, err := resolve(t)
	if err != nil {
		t.Fatal(err)
	}
	hostname, _ := os.Hostname()
	got := fmt.Sprintf("%s %q %s %s %s %s %s %s %s %s", opts.LogLevel, opts.LogPrefix, opts.TCPAddress, opts.HTTPAddress,
		opts.BroadcastAddress, opts.InactiveProducerTimeout, opts.TombstoneLifetime, opts.IdentifyTimeout,
		opts.ProducerReadTimeout, opts.HTTPWriteTimeout)
	want := fmt.Sprintf(`INFO "[nsqlookupd] " 0.0.0.0:4160 0.0.0.0:4161 %s 5m0s 45s 30s 1m0s 1m0s`, hostname)
	if got != want {
		t.Fatalf("got %s; want %s", got, want)
	}
}

// TestConfigPrecedence: a flag given on the command line beats the config
// file, which beats the default.
func TestConfigPrecedence(t *testing.T) {
	path := writeConfig(t, `
tcp_address = "127.0.0.1:5160"
http_address = "127.0.0.1:5161"
tombstone_lifetime = "10s"
inactive_producer_timeout = 2000
log_level = "WARN"
disable_pprof = true
mutex_profile_fraction = 5
producer_read_timeout = "0s"
http_write_timeout = "90s"
`)
	opts, err := resolve(t, "--config", path, "--http-address", "127.0.0.1:6161", "--log-level", "debug",
		"--http-write-timeout", "2m")
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%s %s %s %s %s %v %d %s %s %s", opts.TCPAddress, opts.HTTPAddress, opts.TombstoneLifetime,
		opts.InactiveProducerTimeout, opts.LogLevel, opts.DisablePprof, opts.MutexProfileFraction, opts.IdentifyTimeout,
		opts.ProducerReadTimeout, opts.HTTPWriteTimeout)
	want := "127.0.0.1:5160 127.0.0.1:6161 10s 2s DEBUG true 5 30s 0s 2m0s"
	if got != want {
		t.Fatalf("got %s; want %s", got, want)
	}
}

func TestBadConfig(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"not toml", "tcp_address = ", "failed to load config file"},
		{"bad log level", `log_level = "loud"`, "failed parsing log_level loud"},
		{"bad duration", `tombstone_lifetime = "soon"`, "tombstone_lifetime"},
		{"wrong type", `tcp_address = 4160`, "tcp_address: want a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.text)
			if _, err := resolve(t, "--config", path); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v; want an error containing %q", err, tt.want)
			}
			// the process: one FATAL line, exit status 1
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var stderr bytes.Buffer
			cmd := daemonCmd(ctx, "--config", path, "--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0")
			cmd.Stderr = &stderr
			err := cmd.Run()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit: got %v; want status 1", err)
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], "FATAL: ") || !strings.Contains(lines[0], tt.want) {
				t.Fatalf("stderr: got %q; want one FATAL line containing %q", stderr.String(), tt.want)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		if _, err := resolve(t, "--config", filepath.Join(t.TempDir(), "absent.cfg")); err == nil {
			t.Fatal("got nil; want an error for an unreadable config file")
		}
	})
}

// TestExampleConfig parses contrib/nsqlookupd.cfg.example, checks each key
// names a real flag and each value is the flag's default.
func TestExampleConfig(t *testing.T) {
	var cfg map[string]interface{}
	if _, err := toml.DecodeFile("../../contrib/nsqlookupd.cfg.example", &cfg); err != nil {
		t.Fatal(err)
	}
	opts := nsqlookupd.NewOptions()
	flagSet := nsqlookupdFlagSet(opts)
	for key, v := range cfg {
		f := flagSet.Lookup(strings.ReplaceAll(key, "_", "-"))
		if f == nil {
			t.Errorf("example key %s names no flag", key)
			continue
		}
		if fmt.Sprint(v) != f.DefValue && !sameDuration(v, f.DefValue) && !(key == "log_level" && v == "info") {
			t.Errorf("example %s = %v; the default is %s", key, v, f.DefValue)
		}
	}
	// and every option (but --config, --version, --verbose and the
	// host-specific broadcast address) is listed
	flagSet.VisitAll(func(f *flag.Flag) {
		switch f.Name {
		case "config", "version", "verbose", "broadcast-address":
			return
		}
		if _, ok := cfg[strings.ReplaceAll(f.Name, "-", "_")]; !ok {
			t.Errorf("flag --%s is missing from the example config", f.Name)
		}
	})
}

// sameDuration reports whether v is a duration string equal to the
// duration def ("60s" and the flag's "1m0s").
func sameDuration(v interface{}, def string) bool {
	s, ok := v.(string)
	if !ok {
		return false
	}
	a, errA := time.ParseDuration(s)
	b, errB := time.ParseDuration(def)
	return errA == nil && errB == nil && a == b
}

func TestVersion(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := daemonCmd(ctx, "--version").Output()
	if err != nil {
		t.Fatalf("--version: %v", err)
	}
	want := fmt.Sprintf("nsqlookupd v1.3.0 (built w/%s)\n", runtime.Version())
	if string(out) != want {
		t.Fatalf("got %q; want %q", out, want)
	}
}

var logLine = regexp.MustCompile(`^\[nsqlookupd\] \d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}\.\d{6} (DEBUG|INFO|WARNING|ERROR|FATAL): `)

// TestRunAndSIGTERM starts the daemon as users do, checks its start-up log
// lines and format, then stops it with SIGTERM: exit 0, closing lines.
func TestRunAndSIGTERM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := daemonCmd(ctx, "--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0", "--log-level=Debug")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("daemon stderr closed early")
			}
			if !logLine.MatchString(l) {
				t.Fatalf("log line %q does not match the format %s", l, logLine)
			}
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("no log line within 10s")
		}
		return ""
	}
	if l := next(); !strings.HasSuffix(l, "INFO: nsqlookupd v1.3.0 (built w/"+runtime.Version()+")") {
		t.Fatalf("first line: got %q; want the version line", l)
	}
	var httpAddr string
	for i := 0; i < 2; i++ {
		l := next()
		if _, addr, ok := strings.Cut(l, "INFO: HTTP: listening on "); ok {
			httpAddr = addr
		} else if !strings.Contains(l, "INFO: TCP: listening on 127.0.0.1:") {
			t.Fatalf("got %q; want the listening lines", l)
		}
	}
	resp, err := http.Get("http://" + httpAddr + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if l := next(); !regexp.MustCompile(`INFO: 200 GET /ping \(127\.0\.0\.1:\d+\) \S+$`).MatchString(l) {
		t.Fatalf("access line: got %q", l)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: got %v; want status 0", err)
	}
	joined := strings.Join(rest, "\n")
	if !strings.Contains(joined, "INFO: TCP: closing 127.0.0.1:") || !strings.Contains(joined, "INFO: HTTP: closing "+httpAddr) {
		t.Fatalf("got %q; want the closing lines", joined)
	}
	if c, err := net.DialTimeout("tcp", httpAddr, time.Second); err == nil {
		c.Close()
		t.Fatal("HTTP address still open after exit")
	}
}

func TestListenFailureExits1(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := daemonCmd(ctx, "--tcp-address="+busy.Addr().String(), "--http-address=127.0.0.1:0")
	cmd.Stderr = &stderr
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("got %v; want exit status 1", err)
	}
	want := fmt.Sprintf("FATAL: listen (%s) failed - ", busy.Addr())
	if !strings.Contains(stderr.String(), want) {
		t.Fatalf("stderr %q; want it to contain %q", stderr.String(), want)
	}
}

func TestLogLevelFlag(t *testing.T) {
	var l lg.LogLevel
	for _, s := range []string{"debug", "INFO", "Warn", "error", "fatal"} {
		if err := l.Set(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	if err := l.Set("warning"); err == nil {
		t.Error("warning: got nil; want an error (v1.3.0 accepts warn only)")
	}
}
