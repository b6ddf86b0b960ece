package interop

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/test"
)

// testCA is a certificate authority made for one test: internal/test's,
// which the daemon's own tests use, with the files and clients these
// tests want of it.
type testCA struct{ *test.CA }

func newTestCA(t *testing.T, name string) testCA {
	return testCA{test.NewCA(t, name)}
}

// issue writes a certificate signed by ca for 127.0.0.1, ::1 and
// localhost, usable by a server and a client, and its key, and returns the
// two files.
func (ca testCA) issue(t *testing.T, name string) (certFile, keyFile string) {
	t.Helper()
	return ca.Issue(t, name).WriteFiles(t)
}

// client returns an HTTP client trusting ca, presenting the certificate in
// certFile/keyFile when they are given.
func (ca testCA) client(t *testing.T, certFile, keyFile string) *http.Client {
	t.Helper()
	cfg := &tls.Config{RootCAs: ca.Pool}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// lookupdTLS is how startLookupdTLS runs the daemon with HTTPS: its
// certificate, more TLS flags, and a client of its HTTPS port.
type lookupdTLS struct {
	certFile, keyFile string
	args              []string
	client            *http.Client
}

// newLookupdTLS returns a server certificate from ca, args, and a client
// trusting ca (with no client certificate).
func newLookupdTLS(t *testing.T, ca testCA, args ...string) *lookupdTLS {
	t.Helper()
	certFile, keyFile := ca.issue(t, "nsqlookupd")
	return &lookupdTLS{certFile: certFile, keyFile: keyFile, args: args, client: ca.client(t, "", "")}
}

// ready reports whether the HTTPS port at addr answers /ping.
func (lt *lookupdTLS) ready(addr string) error {
	resp, err := lt.client.Get("https://" + addr + "/ping")
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "OK" {
		return fmt.Errorf("HTTPS /ping: %s %q", resp.Status, body)
	}
	return nil
}

// startNSQDProcess starts a real nsqd v1.3.0 binary (nsqdBinary, built
// from github.com/nsqio/nsq/apps/nsqd) on free 127.0.0.1 ports, registering
// with lookupdTCPAddr, with env added to the test's environment: for an
// nsqd that needs an environment of its own, such as the SSL_CERT_FILE its
// HTTP client reads the system roots from (once per process). It waits
// until nsqd answers /ping, and kills it (by PID) when the test ends.
func startNSQDProcess(t *testing.T, lookupdTCPAddr string, env ...string) *nsqdNode {
	t.Helper()
	bin := nsqdBinary(t)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		// Another test may take a port between freeAddr and nsqd's
		// listen: then nsqd exits, and we try other ports.
		n, err := runNSQDProcess(t, bin, freeAddr(t), freeAddr(t), lookupdTCPAddr, env)
		if err == nil {
			return n
		}
		lastErr = err
	}
	t.Fatalf("starting nsqd: %v", lastErr)
	return nil
}

func runNSQDProcess(t *testing.T, bin, tcpAddr, httpAddr, lookupdTCPAddr string, env []string) (*nsqdNode, error) {
	t.Helper()
	cmd := exec.Command(bin,
		"--tcp-address="+tcpAddr,
		"--http-address="+httpAddr,
		"--broadcast-address=127.0.0.1",
		"--lookupd-tcp-address="+lookupdTCPAddr,
		"--data-path="+t.TempDir(),
	)
	cmd.Env = append(os.Environ(), env...)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			return nil, fmt.Errorf("nsqd exited during start-up (%v):\n%s", cmd.ProcessState, logs.String())
		default:
		}
		resp, err := httpClient.Get("http://" + httpAddr + "/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("nsqd not answering /ping within 15s (%v):\n%s", err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("nsqd (pid %d) output:\n%s", cmd.Process.Pid, logs.String())
		}
	})
	_, tcpPort, _ := net.SplitHostPort(tcpAddr)
	_, httpPort, _ := net.SplitHostPort(httpAddr)
	n := &nsqdNode{TCPAddr: tcpAddr, HTTPAddr: httpAddr}
	n.TCPPort, _ = strconv.Atoi(tcpPort)
	n.HTTPPort, _ = strconv.Atoi(httpPort)
	return n, nil
}
