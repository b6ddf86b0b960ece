package reload

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type opts struct {
	Level   string        `flag:"log-level"`
	Allow   []string      `flag:"tcp-allow" cfg:"tcp_allow_networks"`
	Timeout time.Duration `flag:"tombstone-lifetime"`
	Logger  any           // not an option
}

func TestTakeAndChanges(t *testing.T) {
	running := opts{Level: "info", Allow: []string{"10.0.0.0/8"}, Timeout: 45 * time.Second, Logger: 1}
	asked := opts{Level: "warn", Allow: []string{"10.0.0.0/8", "127.0.0.1"}, Timeout: 10 * time.Second, Logger: 2}
	next := running
	Take(&next, &asked, "log-level", "tcp-allow")
	if next.Level != "warn" || !reflect.DeepEqual(next.Allow, asked.Allow) || next.Timeout != 45*time.Second || next.Logger != 1 {
		t.Fatalf("Take: got %+v", next)
	}
	got := Changes(&next, &asked)
	if len(got) != 1 || got[0] != (Change{Flag: "tombstone-lifetime", Running: "45s", New: "10s"}) {
		t.Fatalf("Changes: got %+v; want tombstone-lifetime alone", got)
	}
	if got := Changes(&running, &running); len(got) != 0 {
		t.Fatalf("Changes of equal options: %+v", got)
	}
}

func TestOptions(t *testing.T) {
	for _, tt := range []struct {
		on, asked bool
		auth      bool
	}{{false, false, true}, {true, true, true}, {true, false, false}, {false, true, false}} {
		got := strings.Join(Options(tt.on, tt.asked), " ")
		if strings.Contains(got, "auth-http-address") != tt.auth || !strings.Contains(got, "tcp-allow") {
			t.Errorf("auth on %v, asked %v: %s", tt.on, tt.asked, got)
		}
	}
}

func TestStatus(t *testing.T) {
	start := time.Unix(1000, 0)
	s := NewStatus(start)
	prometheus.NewRegistry().MustRegister(s.Metrics()...) // valid collectors
	check := func(ok, at float64) {
		t.Helper()
		if got := testutil.ToFloat64(s.Metrics()[0]); got != ok {
			t.Errorf("successful: got %v; want %v", got, ok)
		}
		if got := testutil.ToFloat64(s.Metrics()[1]); got != at {
			t.Errorf("timestamp: got %v; want %v", got, at)
		}
	}
	check(1, 1000)
	s.Done(errors.New("bad file"), time.Unix(2000, 0))
	check(0, 1000)
	s.Done(nil, time.Unix(3000, 0))
	check(1, 3000)
}
