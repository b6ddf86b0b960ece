package interop

import (
	"bufio"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nsqio/go-nsq"
)

// Access control against real NSQ peers: nsqd v1.3.0 in a network namespace
// of its own (so it registers from an address of its own), nsqadmin with
// and without a client certificate, a go-nsq consumer without one.

// metric returns the value of the series key (name{labels} as the text
// format writes it) in d's /metrics, or -1 if it is absent.
func metric(d *lookupd, key string) (float64, error) {
	resp, err := httpClient.Get(d.url("/metrics"))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return -1, sc.Err()
}

const tcpRefusals = `nsqlookupd_access_refusals_total{reason="tcp_source"}`

// TestAccessNSQD: a real nsqd registers from its namespace's address with
// two daemons, one whose --tcp-allow leaves that address out (it is
// refused at accept and never listed) and one whose list holds it (it
// registers). Then the second restarts with a list that leaves it out:
// the nsqd, which held registrations there, comes back at its next
// heartbeat, is refused, and never appears again.
func TestAccessNSQD(t *testing.T) {
	t.Parallel()
	const topic = "orders"
	n := newNetns(t)
	// the host's own address is allowed: the start helper PINGs from it
	refusing := startLookupdOn(t, n.hostIP, "--tcp-allow=127.0.0.0/8,"+n.hostIP)
	allowing := startLookupdOn(t, n.hostIP, "--tcp-allow="+n.hostIP+","+n.nsIP)
	p := startNSQDIn(t, n, refusing.TCPAddr, allowing.TCPAddr)
	p.post(t, "/topic/create?topic="+topic)

	eventually(t, registerTimeout, func() (bool, string) {
		got, err := listed(allowing, topic, p)
		return err == nil && got == "both", fmt.Sprintf("allowing daemon lists the nsqd in %s (%v)", got, err)
	})
	eventually(t, registerTimeout, func() (bool, string) {
		v, err := metric(refusing, tcpRefusals)
		return err == nil && v >= 1, fmt.Sprintf("refusing daemon: %s = %v (%v)", tcpRefusals, v, err)
	})
	if got, err := listed(refusing, topic, p); err != nil || got != "neither" {
		t.Fatalf("refusing daemon lists the nsqd in %s (%v); want neither", got, err)
	}
	refusedLine := regexp.MustCompile(`WARNING: TCP: refused client\(` + regexp.QuoteMeta(n.nsIP) + `:\d+\): not in --tcp-allow`)
	if !refusedLine.MatchString(refusing.text()) {
		t.Errorf("the refusing daemon's log has no line matching %s", refusedLine)
	}
	if strings.Contains(refusing.text(), "TCP: new client("+n.nsIP) {
		t.Errorf("the refusing daemon served the nsqd's connection (a \"TCP: new client(%s\" line)", n.nsIP)
	}

	// The option changes across a restart: the nsqd held registrations,
	// and is refused when it connects again (at its next heartbeat, 15 s).
	allowing.kill()
	allowing.args = []string{"--broadcast-address=127.0.0.1", "--tcp-allow=" + n.hostIP}
	allowing.restart(t)
	eventually(t, 40*time.Second, func() (bool, string) {
		v, err := metric(allowing, tcpRefusals)
		return err == nil && v >= 1, fmt.Sprintf("restarted daemon: %s = %v (%v)", tcpRefusals, v, err)
	})
	if got, err := listed(allowing, topic, p); err != nil || got != "neither" {
		t.Fatalf("restarted daemon lists the nsqd in %s (%v); want neither", got, err)
	}
	if a, code, _ := allowing.lookup(topic); code != http.StatusNotFound {
		t.Errorf("restarted daemon: /lookup?topic=%s answered %d %+v; want 404, the topic never registered", topic, code, a)
	}
}

// TestAccessClientCertificates: a daemon whose admin routes need a client
// certificate (--http-admin-require-client-cert), reads open. A go-nsq
// consumer without a certificate reads over HTTPS and gets every message.
// nsqadmin without a certificate lists the nodes but is refused on the
// tombstone POST; nsqadmin with one tombstones. Both are given the plain
// address: the POST is sent to HTTPS by TLS_REQUIRED.
func TestAccessClientCertificates(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "interop CA")
	clientCA := newTestCA(t, "client CA")
	adminCert, adminKey := clientCA.issue(t, "nsqadmin")
	d := startLookupdTLS(t, newLookupdTLS(t, ca, "--tls-root-ca-file="+clientCA.CertFile, "--http-admin-require-client-cert"))
	n1, n2 := startNSQD(t, d.TCPAddr), startNSQD(t, d.TCPAddr)
	n1.publish(t, "acc_a", "a1")
	n2.publish(t, "acc_a", "a2")
	n2.publish(t, "acc_b", "b2")
	for _, topic := range []string{"acc_a", "acc_b"} {
		want := []*nsqdNode{n1, n2}
		if topic == "acc_b" {
			want = want[1:]
		}
		eventually(t, registerTimeout, func() (bool, string) {
			a, _, err := d.lookup(topic) // over HTTPS, without a certificate
			if err != nil {
				return false, err.Error()
			}
			return producersAre(a.Producers, want...)
		})
	}

	// a consumer without a certificate, over HTTPS
	var got messageSet
	startConsumer(t, "acc_a", "ch", got.add, func(c *nsq.Consumer) error {
		c.SetLookupdHttpClient(ca.client(t, "", ""))
		return c.ConnectToNSQLookupd("https://" + d.HTTPSAddr)
	})
	waitConsumed(t, &got, []string{"a1", "a2"})

	// nsqadmin without a certificate: lists, cannot tombstone
	without := startNSQAdmin(t, d.HTTPAddr, ca.CertFile, "", "")
	var nodes struct {
		Nodes []struct {
			TCPPort int `json:"tcp_port"`
		} `json:"nodes"`
		Message string `json:"message"`
	}
	if _, err := getJSON(without+"/nodes", &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes.Nodes) != 2 || nodes.Message != "" {
		t.Errorf("nsqadmin without a certificate: /api/nodes %+v; want both nodes", nodes)
	}
	answer := doRequest(t, http.MethodDelete, without+"/nodes/"+n2.nodeAddr(), map[string]string{"topic": "acc_b"})
	if !strings.Contains(string(answer), "CLIENT_CERT_REQUIRED") {
		t.Errorf("nsqadmin without a certificate: tombstone answered %s; want the daemon's CLIENT_CERT_REQUIRED", answer)
	}
	logs := d.text()
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`INFO: 403 POST /topic/tombstone\?topic=acc_b&node=\S+ \(127\.0\.0\.1:\d+\) `),
		regexp.MustCompile(`INFO: HTTPS: 403 POST /topic/tombstone\?topic=acc_b&node=\S+ \(127\.0\.0\.1:\d+\) `),
	} {
		if !re.MatchString(logs) {
			t.Errorf("no access line matching %s in the daemon's log", re)
		}
	}
	if strings.Contains(logs, "200 POST /topic/tombstone") {
		t.Error("the daemon answered a tombstone without a certificate 200")
	}
	if v, err := metric(d, `nsqlookupd_access_refusals_total{reason="client_cert"}`); err != nil || v != 2 {
		t.Errorf("refusals client_cert: %v (%v); want 2 (the plain POST and the HTTPS one)", v, err)
	}

	// nsqadmin with a certificate tombstones n2 in acc_a
	with := startNSQAdmin(t, d.HTTPAddr, ca.CertFile, adminCert, adminKey)
	answer = doRequest(t, http.MethodDelete, with+"/nodes/"+n2.nodeAddr(), map[string]string{"topic": "acc_a"})
	if strings.Contains(string(answer), "CLIENT_CERT") {
		t.Errorf("nsqadmin with a certificate: tombstone answered %s", answer)
	}
	tombstoned := regexp.MustCompile(`INFO: HTTPS: 200 POST /topic/tombstone\?topic=acc_a&node=\S+ \(127\.0\.0\.1:\d+\) `)
	if !tombstoned.MatchString(d.text()) {
		t.Errorf("no access line matching %s in the daemon's log", tombstoned)
	}
	eventually(t, registerTimeout, func() (bool, string) {
		a, _, err := d.lookup("acc_a")
		if err != nil {
			return false, err.Error()
		}
		return producersAre(a.Producers, n1)
	})
}
