package interop

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nsqio/go-nsq"
	"github.com/nsqio/nsq/nsqd"
)

// TestHTTPSConsumer: a go-nsq consumer given the daemon's https:// address
// and an HTTP client trusting its CA finds the nsqd through it and
// receives every message.
func TestHTTPSConsumer(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "interop CA")
	d := startLookupdTLS(t, newLookupdTLS(t, ca))
	n := startNSQD(t, d.TCPAddr)
	const topic, count = "topic_https", 10
	var want []string
	for i := range count {
		body := fmt.Sprintf("m%d", i)
		n.publish(t, topic, body)
		want = append(want, body)
	}

	var mu sync.Mutex
	got := map[string]bool{}
	startConsumer(t, topic, "ch", func(m *nsq.Message) {
		mu.Lock()
		got[string(m.Body)] = true
		mu.Unlock()
	}, func(c *nsq.Consumer) error {
		c.SetLookupdHttpClient(ca.client(t, "", ""))
		return c.ConnectToNSQLookupd("https://" + d.HTTPSAddr)
	})
	eventually(t, 20*time.Second, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		var missing []string
		for _, body := range want {
			if !got[body] {
				missing = append(missing, body)
			}
		}
		return len(missing) == 0, fmt.Sprintf("messages not received: %q", missing)
	})
	// It asked over HTTPS: the daemon logged the lookup as an HTTPS one.
	lookupLine := regexp.MustCompile(`INFO: HTTPS: 200 GET /lookup\?topic=` + topic + ` \(127\.0\.0\.1:\d+\) `)
	if !lookupLine.MatchString(d.text()) {
		t.Errorf("no access line matching %s in the daemon's log", lookupLine)
	}
}

// TestNSQAdminTLSRequired: nsqadmin given the daemon's plain address,
// which answers TLS_REQUIRED, and the CA as --http-client-tls-root-ca-file,
// follows it to HTTPS: it lists the nodes and topics and tombstones a node.
func TestNSQAdminTLSRequired(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "interop CA")
	d := startLookupdTLS(t, newLookupdTLS(t, ca, "--tls-required"))
	c := &cluster{lookupd: d, n1: startNSQD(t, d.TCPAddr), n2: startNSQD(t, d.TCPAddr)}
	c.n1.publish(t, topicA, "a1")
	c.n1.publish(t, topicB, "b1")
	c.n2.publish(t, topicB, "b2")
	c.waitRegistered(t, registerTimeout) // read over HTTPS

	// The plain port sends everyone to HTTPS.
	resp, err := httpClient.Get(d.url("/topics"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	_, httpsPort, _ := net.SplitHostPort(d.HTTPSAddr)
	if want := `{"message": "TLS_REQUIRED", "https_port": ` + httpsPort + `}`; resp.StatusCode != 403 || string(body) != want {
		t.Fatalf("plain GET /topics: %s %q, want 403 %q", resp.Status, body, want)
	}

	api := startNSQAdmin(t, d.HTTPAddr, ca.CertFile, "", "")
	var nodes struct {
		Nodes []struct {
			TCPPort int `json:"tcp_port"`
		} `json:"nodes"`
		Message string `json:"message"`
	}
	if _, err := getJSON(api+"/nodes", &nodes); err != nil {
		t.Fatal(err)
	}
	var ports []int
	for _, n := range nodes.Nodes {
		ports = append(ports, n.TCPPort)
	}
	slices.Sort(ports)
	if want := sortedInts(c.n1.TCPPort, c.n2.TCPPort); !slices.Equal(ports, want) || nodes.Message != "" {
		t.Errorf("/api/nodes: nodes with tcp ports %v (message %q), want %v", ports, nodes.Message, want)
	}
	adminListsTopicsAB(t, api)

	adminTombstonesN2(t, api, c)
	// nsqadmin was sent from the plain port to the HTTPS one.
	logs := d.text()
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`INFO: 403 POST /topic/tombstone\?\S+ \(127\.0\.0\.1:\d+\) `),
		regexp.MustCompile(`INFO: HTTPS: 200 POST /topic/tombstone\?\S+ \(127\.0\.0\.1:\d+\) `),
	} {
		if !re.MatchString(logs) {
			t.Errorf("no access line matching %s in the daemon's log", re)
		}
	}
}

func sortedInts(v ...int) []int {
	slices.Sort(v)
	return v
}

// TestNSQAdminClientCertificate: with --tls-client-auth-policy
// require-verify, nsqadmin without a client certificate is refused and
// nsqadmin with one from the trusted CA is served (both given the plain
// address: the policy implies TLS_REQUIRED).
func TestNSQAdminClientCertificate(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "interop CA")
	clientCA := newTestCA(t, "client CA")
	adminCert, adminKey := clientCA.issue(t, "nsqadmin")
	lt := newLookupdTLS(t, ca, "--tls-client-auth-policy=require-verify", "--tls-root-ca-file="+clientCA.CertFile)
	lt.client = ca.client(t, adminCert, adminKey)
	d := startLookupdTLS(t, lt)
	d.post(t, "/topic/create?topic=topic_cert")

	without := startNSQAdmin(t, d.HTTPAddr, ca.CertFile, "", "")
	resp, err := httpClient.Get(without + "/topics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !bytes.Contains(body, []byte("UPSTREAM_ERROR")) {
		t.Errorf("nsqadmin without a client certificate: /api/topics %s %q, want 502 UPSTREAM_ERROR", resp.Status, body)
	}

	with := startNSQAdmin(t, d.HTTPAddr, ca.CertFile, adminCert, adminKey)
	var topics struct {
		Topics  []string `json:"topics"`
		Message string   `json:"message"`
	}
	if _, err := getJSON(with+"/topics", &topics); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(topics.Topics, []string{"topic_cert"}) || topics.Message != "" {
		t.Errorf("nsqadmin with a client certificate: /api/topics %+v, want [topic_cert]", topics)
	}
}

// TestChannelPrecreationHTTPS: an nsqd that trusts the CA (through
// SSL_CERT_FILE, its HTTP client being on the system roots) still creates a
// channel created on a daemon that requires TLS: it asks /channels at the
// plain address from the IDENTIFY answer, gets TLS_REQUIRED and asks again
// over HTTPS. An nsqd that does not trust the CA cannot.
func TestChannelPrecreationHTTPS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "interop CA")
	d := startLookupdTLS(t, newLookupdTLS(t, ca, "--tls-required"))
	trusting := startNSQDProcess(t, d.TCPAddr, "SSL_CERT_FILE="+ca.CertFile)
	distrusting := startNSQD(t, d.TCPAddr) // this process's roots: not the test CA

	// As in TestChannelPrecreation: once both have registered a topic, each
	// holds the daemon's IDENTIFY answer.
	trusting.publish(t, "warmup", "w")
	distrusting.publish(t, "warmup", "w")
	eventually(t, registerTimeout, func() (bool, string) {
		a, _, err := d.lookup("warmup")
		if err != nil {
			return false, err.Error()
		}
		return producersAre(a.Producers, trusting, distrusting)
	})

	d.post(t, "/channel/create?topic=topic_c&channel=pre")
	for _, n := range []*nsqdNode{trusting, distrusting} {
		n.publish(t, "topic_c", "c1") // returns once nsqd has created the topic and its channels
	}
	if got := nsqdChannels(t, trusting, "topic_c"); !slices.Equal(got, []string{"pre"}) {
		t.Errorf("nsqd trusting the CA: topic_c channels %q, want [pre]", got)
	}
	if got := nsqdChannels(t, distrusting, "topic_c"); len(got) != 0 {
		t.Errorf("nsqd not trusting the CA: topic_c channels %q, want none (it cannot verify the daemon)", got)
	}
	line := regexp.MustCompile(`INFO: HTTPS: 200 GET /channels\?topic=topic_c \(127\.0\.0\.1:\d+\) `)
	if !line.MatchString(d.text()) {
		t.Errorf("no access line matching %s in the daemon's log", line)
	}
}

// nsqdChannels returns the channels nsqd n has for topic.
func nsqdChannels(t *testing.T, n *nsqdNode, topic string) []string {
	t.Helper()
	var stats struct {
		Topics []struct {
			TopicName string `json:"topic_name"`
			Channels  []struct {
				ChannelName string `json:"channel_name"`
			} `json:"channels"`
		} `json:"topics"`
	}
	if _, err := getJSON("http://"+n.HTTPAddr+"/stats?format=json&topic="+topic, &stats); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tp := range stats.Topics {
		for _, ch := range tp.Channels {
			names = append(names, ch.ChannelName)
		}
	}
	return names
}

// TestTLSRequiredSameAsNSQD: the plain port's answer with TLS required is
// a real nsqd v1.3.0's, byte for byte (but the date and port).
func TestTLSRequiredSameAsNSQD(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "interop CA")
	lt := newLookupdTLS(t, ca, "--tls-required")
	d := startLookupdTLS(t, lt)

	opts := nsqd.NewOptions()
	opts.Logger = newTestLogger(t, "nsqd")
	opts.TCPAddress, opts.HTTPAddress, opts.HTTPSAddress = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	opts.TLSCert, opts.TLSKey = lt.certFile, lt.keyFile
	opts.TLSRequired = nsqd.TLSRequired
	opts.DataPath = t.TempDir()
	n, err := nsqd.New(opts)
	if err != nil {
		t.Fatalf("nsqd.New: %v", err)
	}
	go n.Main()
	t.Cleanup(n.Exit)

	normalize := regexp.MustCompile(`Date: [^\r]*|"https_port": \d+`)
	for _, path := range []string{"/ping", "/info", "/nope", "/debug/pprof/"} {
		ours := normalize.ReplaceAllString(rawGet(t, d.HTTPAddr, path), "X")
		theirs := normalize.ReplaceAllString(rawGet(t, n.RealHTTPAddr().String(), path), "X")
		if ours != theirs {
			t.Errorf("GET %s on the plain port:\nours %q\nnsqd %q", path, ours, theirs)
		}
		if !strings.HasPrefix(ours, "HTTP/1.1 403 ") {
			t.Errorf("GET %s on the plain port: %q, want a 403", path, ours)
		}
	}
}

// rawGet sends GET path with "Connection: close" to addr and returns the
// whole answer as sent.
func rawGet(t *testing.T, addr, path string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path)
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", path, addr, err)
	}
	return string(b)
}
