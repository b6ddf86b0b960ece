package interop

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Reload on SIGHUP (docs/logging.md, Reload), on the built binary with a
// real nsqd registered throughout: its connection is never dropped, so its
// producer's remote_address never changes.

const reloadTopic = "reloaded"

// reloadable is a daemon started with --config, a real nsqd registered
// with it, and the nsqd's remote address as the daemon lists it.
type reloadable struct {
	*lookupd
	config string
	nsqd   *nsqdNode
	remote string
}

// startReloadable writes config to a file, starts the daemon with
// --config and args, and registers a real nsqd with it.
func startReloadable(t *testing.T, config string, args ...string) *reloadable {
	t.Helper()
	r := &reloadable{config: filepath.Join(t.TempDir(), "nsqlookupd.cfg")}
	r.write(t, config)
	// the file says the log format: INTEROP_LOG_FORMAT does not
	r.lookupd = launch(t, &lookupd{bin: lookupdBin, ownFormat: true,
		args: append([]string{"--broadcast-address=127.0.0.1", "--config=" + r.config}, args...)}, "127.0.0.1", "127.0.0.1")
	r.nsqd = startNSQD(t, r.TCPAddr)
	r.nsqd.publish(t, reloadTopic, "m")
	eventually(t, registerTimeout, func() (bool, string) {
		a, _, err := r.lookup(reloadTopic)
		if err != nil || len(a.Producers) != 1 {
			return false, fmt.Sprintf("/lookup: %+v, %v", a, err)
		}
		r.remote = a.Producers[0].RemoteAddress
		return true, ""
	})
	return r
}

func (r *reloadable) write(t *testing.T, config string) {
	t.Helper()
	if err := os.WriteFile(r.config, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
}

// reloadOutcomes matches the line that ends each reload: done, or refused.
var reloadOutcomes = regexp.MustCompile(`RELOAD: done \(|the running configuration is kept`)

// reload writes config, sends SIGHUP and waits for the reload's last line;
// it returns the log written since.
func (r *reloadable) reload(t *testing.T, config string) string {
	t.Helper()
	r.write(t, config)
	before := len(r.logs.String())
	n := len(reloadOutcomes.FindAllString(r.logs.String(), -1))
	if err := r.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() (bool, string) {
		return len(reloadOutcomes.FindAllString(r.logs.String(), -1)) > n, "no reload line after SIGHUP"
	})
	return r.logs.String()[before:]
}

// stillConnected fails unless the nsqd is listed with the remote address
// it had at the start: its connection was never dropped.
func (r *reloadable) stillConnected(t *testing.T) {
	t.Helper()
	a, _, err := r.lookup(reloadTopic)
	if err != nil || len(a.Producers) != 1 || a.Producers[0].RemoteAddress != r.remote {
		t.Fatalf("/lookup?topic=%s: %+v, %v; want the nsqd at %s, as at the start", reloadTopic, a.Producers, err, r.remote)
	}
}

// lines returns the lines of log that match re.
func lines(log string, re string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if regexp.MustCompile(re).MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// TestReloadSIGHUP changes each reloadable setting in the file in turn
// and sends SIGHUP: the new behaviour holds at once, and the nsqd stays
// connected. The command line still beats the file (its --tcp-address,
// the file's other one, is no change); a restart-only option is named and
// kept; a bad file is refused whole; narrowing --tcp-allow closes the
// nsqd's connection and its producer leaves.
func TestReloadSIGHUP(t *testing.T) {
	t.Parallel()
	const base = "tcp_address = \"127.0.0.1:1\"\n" // the flag wins
	r := startReloadable(t, base)
	gauge := func() float64 {
		v, err := metric(r.lookupd, "nsqlookupd_config_last_reload_successful")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	// JSON
	r.reload(t, base+"log_format = \"json\"\n")
	r.get("/lookup?topic="+reloadTopic+"&at=json", &lookupAnswer{})
	eventually(t, 5*time.Second, func() (bool, string) {
		return len(lines(r.logs.String(), `^\{"time":"[^"]+Z","level":"INFO","msg":"200 GET /lookup\?topic=reloaded&at=json .*"status":200,"method":"GET"`)) == 1, "no JSON access line"
	})
	r.stillConnected(t)

	// text again, probes quiet
	log := r.reload(t, base+"http_access_log = \"ignore-probes\"\n")
	if len(lines(log, `--tcp-address`)) != 0 {
		t.Fatalf("the file's tcp_address was taken as a change: the flag beats the file\n%s", log)
	}
	r.get("/ping?at=quiet", nil)
	r.get("/lookup?topic="+reloadTopic+"&at=quiet", &lookupAnswer{})
	eventually(t, 5*time.Second, func() (bool, string) {
		return len(lines(r.logs.String(), ` INFO: 200 GET /lookup\?topic=reloaded&at=quiet `)) == 1, "no text access line for /lookup"
	})
	if got := lines(r.logs.String(), `/ping\?at=quiet`); len(got) != 0 {
		t.Fatalf("a probe logged with ignore-probes: %q", got)
	}

	// an admin rule, then a bad file: refused, the rule stays
	admin := func() int {
		resp, err := httpClient.Post(r.url("/topic/create?topic=t_admin"), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	r.reload(t, base+"http_admin_allow_networks = [\"10.0.0.0/8\"]\n")
	if code := admin(); code != http.StatusForbidden {
		t.Fatalf("admin POST from 127.0.0.1 with http_admin_allow_networks = [10.0.0.0/8]: %d; want 403", code)
	}
	for _, bad := range []string{"tcp_address = ", "log_level = \"loud\"\n", "tcp_allow_networks = [\"10.0.0.0/33\"]\n"} {
		log := r.reload(t, bad)
		if got := lines(log, `RELOAD|ACCESS|HTTPS|AUTH`); len(got) != 1 || !regexp.MustCompile(`ERROR: RELOAD: .*; the running configuration is kept$`).MatchString(got[0]) {
			t.Fatalf("bad file %q: logged\n%s\nwant one ERROR line", bad, log)
		}
		if code := admin(); code != http.StatusForbidden || gauge() != 0 {
			t.Fatalf("bad file %q: admin POST %d, gauge %v; want the rule kept (403), 0", bad, code, gauge())
		}
	}
	r.stillConnected(t)

	// a restart-only change: named, kept
	log = r.reload(t, base+"tombstone_lifetime = \"10s\"\n")
	if len(lines(log, `WARNING: RELOAD: --tombstone-lifetime needs a restart: still 45s \(asked: 10s\)`)) != 1 || gauge() != 1 || admin() != http.StatusOK {
		t.Fatalf("a restart-only change:\n%s\nwant it named, the gauge 1, the admin rule gone", log)
	}
	r.stillConnected(t)

	// --tcp-allow narrowed: the nsqd is closed, with one line, and leaves
	log = r.reload(t, base+"tcp_allow_networks = [\"10.0.0.0/8\"]\n")
	eventually(t, 5*time.Second, func() (bool, string) {
		a, code, err := r.lookup(reloadTopic)
		return err == nil && len(a.Producers) == 0 || code == http.StatusNotFound, fmt.Sprintf("/lookup: %+v", a)
	})
	closing := lines(r.logs.String(), `WARNING: TCP: closing client\(`+regexp.QuoteMeta(r.remote)+`\): not in --tcp-allow since the reload`)
	if len(closing) != 1 || len(lines(r.logs.String(), `ERROR: client\(`+regexp.QuoteMeta(r.remote)+`\)`)) != 0 {
		t.Fatalf("closing lines %q; want one, and no ERROR line for the connection\n%s", closing, log)
	}
}

// TestReloadAuth: the auth servers change on a reload, without a restart:
// a secret is checked against the new one.
func TestReloadAuth(t *testing.T) {
	t.Parallel()
	a, b := startAuthd(t), startAuthd(t)
	r := startReloadable(t, fmt.Sprintf("auth_http_addresses = [%q]\nhttp_admin_allow_networks = [\"127.0.0.1\"]\n", a.addr))
	client := &http.Client{Timeout: 10 * time.Second}
	getAs(t, client, r.lookupd, "/topics", "secret-a")
	if a.count("secret-a") != 1 || b.count("secret-a") != 0 {
		t.Fatalf("queries: %d to the first server, %d to the second; want 1, 0", a.count("secret-a"), b.count("secret-a"))
	}
	r.reload(t, fmt.Sprintf("auth_http_addresses = [%q]\nhttp_admin_allow_networks = [\"127.0.0.1\"]\nhttp_client_request_timeout = \"3s\"\n", b.addr))
	if code, body := getAs(t, client, r.lookupd, "/topics", "secret-a"); code != http.StatusOK || b.count("secret-a") != 1 || a.count("secret-a") != 1 {
		t.Fatalf("after the reload: %d %s, queries %d, %d; want one query to the second server", code, body, a.count("secret-a"), b.count("secret-a"))
	}
	r.stillConnected(t)
	// turning auth off needs a restart: named, and auth stays on
	log := r.reload(t, "http_admin_allow_networks = [\"127.0.0.1\"]\n")
	if len(lines(log, `WARNING: RELOAD: --auth-http-address needs a restart`)) != 1 {
		t.Fatalf("auth turned off by a reload:\n%s\nwant a WARNING line naming --auth-http-address", log)
	}
	if code, _ := getAs(t, clientFrom("127.0.0.2"), r.lookupd, "/topics", ""); code != http.StatusUnauthorized {
		t.Fatalf("GET /topics without a secret from 127.0.0.2: %d; want 401, auth still on", code)
	}
}

// TestReloadBurst: 100 SIGHUPs in a burst, alternating two files, while
// readers read: no crash, no goroutine left behind, the nsqd connected
// throughout, and the configuration of the last file in force.
func TestReloadBurst(t *testing.T) {
	t.Parallel()
	r := startReloadable(t, "")
	goroutines := func() float64 {
		v, err := metric(r.lookupd, "go_goroutines")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	baseline := goroutines()

	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := r.lookup(reloadTopic); err != nil {
					t.Errorf("/lookup during the burst: %v", err)
					return
				}
			}
		}()
	}
	files := []string{"http_access_log = \"none\"\nlog_level = \"warn\"\n", "http_access_log = \"ignore-probes\"\n"}
	for i := range 100 {
		r.write(t, files[i%2])
		if err := r.proc.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	readers.Wait()
	// the last file, and one more SIGHUP that is surely read after it
	r.reload(t, "http_access_log = \"none\"\n")
	r.get("/lookup?topic="+reloadTopic+"&at=end", &lookupAnswer{})
	if got := lines(r.logs.String(), `at=end`); len(got) != 0 {
		t.Fatalf("access lines with http_access_log = none: %q", got)
	}
	if v, _ := metric(r.lookupd, "nsqlookupd_config_last_reload_successful"); v != 1 {
		t.Fatalf("nsqlookupd_config_last_reload_successful: %v; want 1", v)
	}
	r.stillConnected(t)
	eventually(t, 10*time.Second, func() (bool, string) {
		n := goroutines()
		return n <= baseline+5, fmt.Sprintf("%v goroutines; %v before the burst", n, baseline)
	})
	st, err := r.terminate(10 * time.Second)
	if err != nil || !st.Exited() || st.ExitCode() != 0 {
		t.Fatalf("SIGTERM after the burst: %v, %v; want exit status 0", st, err)
	}
}
