package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/mreiferson/go-options"

	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/internal/test"
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
		{"bad log format", `log_format = "yaml"`, "failed parsing log_format yaml"},
		{"bad access log", `http_access_log = "probes"`, "failed parsing http_access_log probes"},
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
	keys := optionKeys() // config key -> flag name
	for key, v := range cfg {
		name, ok := keys[key]
		if !ok {
			name = strings.ReplaceAll(key, "_", "-")
		}
		f := flagSet.Lookup(name)
		if f == nil {
			t.Errorf("example key %s names no flag", key)
			continue
		}
		if list, ok := v.([]interface{}); ok && len(list) == 0 && f.DefValue == "" {
			continue // an empty list: no item, the default
		}
		if fmt.Sprint(v) != f.DefValue && !sameDuration(v, f.DefValue) && !(key == "log_level" && v == "info") {
			t.Errorf("example %s = %v; the default is %s", key, v, f.DefValue)
		}
	}
	// and every option (but --config, --version, --verbose and the
	// host-specific broadcast address) is listed
	flags := map[string]string{} // flag name -> config key
	for key, name := range keys {
		flags[name] = key
	}
	flagSet.VisitAll(func(f *flag.Flag) {
		switch f.Name {
		case "config", "version", "verbose", "broadcast-address":
			return
		}
		key, ok := flags[f.Name]
		if !ok {
			key = strings.ReplaceAll(f.Name, "-", "_")
		}
		if _, ok := cfg[key]; !ok {
			t.Errorf("flag --%s is missing from the example config (as %s)", f.Name, key)
		}
	})
}

// optionKeys maps the config key of each option to its flag name, as
// go-options resolves them (a list's key is its cfg tag).
func optionKeys() map[string]string {
	keys := map[string]string{}
	typ := reflect.TypeOf(nsqlookupd.Options{})
	for i := 0; i < typ.NumField(); i++ {
		if f := typ.Field(i); f.Tag.Get("flag") != "" {
			keys[configKey(f)] = f.Tag.Get("flag")
		}
	}
	return keys
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

// TestTLSConfigKeys: the TLS options are config-file keys too, and a flag
// still beats the file.
func TestTLSConfigKeys(t *testing.T) {
	path := writeConfig(t, `
https_address = "127.0.0.1:5162"
tls_cert = "/etc/nsqlookupd/cert.pem"
tls_key = "/etc/nsqlookupd/key.pem"
tls_client_auth_policy = "require-verify"
tls_root_ca_file = "/etc/nsqlookupd/ca.pem"
tls_min_version = "tls1.3"
tls_required = true
`)
	opts, err := resolve(t, "--config", path, "--tls-min-version", "tls1.2", "--tls-required=false")
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%s %s %s %s %s %s %v", opts.HTTPSAddress, opts.TLSCert, opts.TLSKey, opts.TLSClientAuthPolicy,
		opts.TLSRootCAFile, opts.TLSMinVersion, opts.TLSRequired)
	want := "127.0.0.1:5162 /etc/nsqlookupd/cert.pem /etc/nsqlookupd/key.pem require-verify /etc/nsqlookupd/ca.pem tls1.2 false"
	if got != want {
		t.Fatalf("got %s; want %s", got, want)
	}
	defaults, err := resolve(t)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%q %q %q %q %q %q %v", defaults.HTTPSAddress, defaults.TLSCert, defaults.TLSKey,
		defaults.TLSClientAuthPolicy, defaults.TLSRootCAFile, defaults.TLSMinVersion, defaults.TLSRequired); got != `"" "" "" "" "" "tls1.2" false` {
		t.Fatalf("defaults: got %s; want no HTTPS, tls1.2", got)
	}
}

// TestTLSBadConfig: each bad TLS configuration, by flag or config file,
// stops start-up with exactly one FATAL line and exit status 1.
func TestTLSBadConfig(t *testing.T) {
	ca := test.NewCA(t, "test CA")
	certFile, keyFile := ca.Issue(t, "nsqlookupd").WriteFiles(t)
	_, otherKey := ca.Issue(t, "other").WriteFiles(t)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	test.WriteFile(t, garbage, []byte("not PEM\n"))
	missing := filepath.Join(t.TempDir(), "missing.pem")
	https := []string{"--https-address=127.0.0.1:0", "--tls-cert=" + certFile, "--tls-key=" + keyFile}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"https without cert and key", []string{"--https-address=127.0.0.1:0"},
			"FATAL: --https-address needs --tls-cert and --tls-key"},
		{"cert without key", []string{"--https-address=127.0.0.1:0", "--tls-cert=" + certFile},
			"FATAL: --https-address needs --tls-key"},
		{"policy without cert and key", []string{"--https-address=127.0.0.1:0", "--tls-client-auth-policy=require"},
			"FATAL: --tls-client-auth-policy needs --tls-cert and --tls-key"},
		{"tls-required without https", []string{"--tls-required", "--tls-cert=" + certFile, "--tls-key=" + keyFile},
			"FATAL: --tls-required needs --https-address"},
		{"cert and key without https", []string{"--tls-cert=" + certFile, "--tls-key=" + keyFile},
			"FATAL: --tls-cert needs --https-address"},
		{"unknown policy", append(https, "--tls-client-auth-policy=optional"),
			`FATAL: unknown --tls-client-auth-policy "optional" (want require or require-verify, or empty)`},
		{"unknown version", append(https, "--tls-min-version=tls1.4"),
			`FATAL: unknown --tls-min-version "tls1.4" (want tls1.0, tls1.1, tls1.2 or tls1.3)`},
		{"unreadable cert", []string{"--https-address=127.0.0.1:0", "--tls-cert=" + missing, "--tls-key=" + keyFile},
			"FATAL: failed to load --tls-cert " + missing + " and --tls-key " + keyFile + " - open " + missing + ": no such file or directory"},
		{"garbage key", []string{"--https-address=127.0.0.1:0", "--tls-cert=" + certFile, "--tls-key=" + garbage},
			"FATAL: failed to load --tls-cert " + certFile + " and --tls-key " + garbage + " - tls: failed to find any PEM data in key input"},
		{"mismatched pair", []string{"--https-address=127.0.0.1:0", "--tls-cert=" + certFile, "--tls-key=" + otherKey},
			"FATAL: failed to load --tls-cert " + certFile + " and --tls-key " + otherKey + " - tls: private key does not match public key"},
		{"unreadable root CA", append(https, "--tls-root-ca-file="+missing),
			"FATAL: failed to read --tls-root-ca-file - open " + missing + ": no such file or directory"},
		{"config file: unknown version", []string{"--config", writeConfig(t, `tls_min_version = "ssl3.0"`)},
			`FATAL: unknown --tls-min-version "ssl3.0" (want tls1.0, tls1.1, tls1.2 or tls1.3)`},
		{"config file: tls_required not a bool", []string{"--config", writeConfig(t, `tls_required = "yes"`)},
			"FATAL: invalid config file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exitsFatal(t, tt.args, tt.want)
		})
	}
}

// TestHTTPSRun starts the daemon with HTTPS and TLS required as an operator
// would: the listening lines, the plain port's TLS_REQUIRED, an HTTPS
// request and its marked access line, and the closing lines on SIGTERM.
func TestHTTPSRun(t *testing.T) {
	ca := test.NewCA(t, "test CA")
	certFile, keyFile := ca.Issue(t, "nsqlookupd").WriteFiles(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := daemonCmd(ctx, "--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0", "--https-address=127.0.0.1:0",
		"--tls-cert="+certFile, "--tls-key="+keyFile, "--tls-required")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stderr)
	next := func() string {
		t.Helper()
		if !sc.Scan() {
			t.Fatalf("daemon stderr ended: %v", sc.Err())
		}
		return sc.Text()
	}
	next() // the version line
	addrs := map[string]string{}
	for len(addrs) < 3 {
		l := next()
		_, rest, ok := strings.Cut(l, "INFO: ")
		proto, addr, ok2 := strings.Cut(rest, ": listening on ")
		if !ok || !ok2 {
			t.Fatalf("got %q; want the listening lines", l)
		}
		addrs[proto] = addr
	}

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}}
	resp, err := client.Get("http://" + addrs["HTTP"] + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	_, httpsPort, _ := net.SplitHostPort(addrs["HTTPS"])
	if want := `{"message": "TLS_REQUIRED", "https_port": ` + httpsPort + `}`; resp.StatusCode != 403 || string(body) != want {
		t.Fatalf("plain GET /ping: got %d %q; want 403 %q", resp.StatusCode, body, want)
	}
	if l := next(); !regexp.MustCompile(`INFO: 403 GET /ping \(127\.0\.0\.1:\d+\) \S+$`).MatchString(l) {
		t.Fatalf("plain access line: got %q", l)
	}
	resp, err = client.Get("https://" + addrs["HTTPS"] + "/info")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != `{"version":"1.3.0"}` {
		t.Fatalf("HTTPS GET /info: got %d %q", resp.StatusCode, body)
	}
	if l := next(); !regexp.MustCompile(`INFO: HTTPS: 200 GET /info \(127\.0\.0\.1:\d+\) \S+$`).MatchString(l) {
		t.Fatalf("HTTPS access line: got %q", l)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for sc.Scan() {
		rest = append(rest, sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: got %v; want status 0", err)
	}
	if joined := strings.Join(rest, "\n"); !strings.Contains(joined, "INFO: HTTPS: closing "+addrs["HTTPS"]) {
		t.Fatalf("got %q; want the HTTPS closing line", joined)
	}
}

// exitsFatal runs the daemon with args on free loopback ports and fails t
// unless it exits with status 1 after exactly one log line, containing
// want.
func exitsFatal(t *testing.T, args []string, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := daemonCmd(ctx, append([]string{"--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0"}, args...)...)
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: got %v; want status 1 (stderr %q)", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 1 || !logLine.MatchString(lines[0]) || !strings.Contains(lines[0], want) {
		t.Fatalf("stderr: got %q; want one log line containing %q", stderr.String(), want)
	}
}
