package auth

import (
	"github.com/prometheus/client_golang/prometheus"
)

// What Read answered, the label values of nsqlookupd_auth_requests_total.
const (
	answerFiltered    = iota // a secret's state: the answer filtered by it
	answerAdmin              // no secret, an admin rule passed: unfiltered
	answerProducer           // no secret, /channels from a producer's address: unfiltered
	answerRequired           // no secret: 401 AUTH_REQUIRED
	answerFailed             // a refused secret: 401 AUTH_FAILED
	answerRateLimited        // a new secret from a source over its budget: 429
	answerUnavailable        // no auth server answered in time: 503
	numAnswers
)

var answerNames = [numAnswers]string{"filtered", "admin", "producer", "auth_required", "auth_failed", "rate_limited", "auth_unavailable"}

// queryBuckets of nsqlookupd_auth_query_duration_seconds: an auth server
// on the LAN answers in a millisecond or so; the default request timeout
// is 5 s.
var queryBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// metrics are the auth series. No label value comes from a request: the
// secret, the identity and the servers' addresses are never labels.
type metrics struct {
	all      collectors
	queries  [numResults]prometheus.Counter
	answers  [numAnswers]prometheus.Counter
	duration prometheus.Histogram
}

func newMetrics(a *Authorizer) metrics {
	var m metrics
	queries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nsqlookupd_auth_queries_total",
		Help: "Queries to the auth servers (one per secret not cached, whichever servers it tried), by result: ok (authorizations), " +
			"refused (401 or 403 from every server that answered, or no authorization), failed (no usable answer in time).",
	}, []string{"result"})
	for r := range m.queries {
		m.queries[r] = queries.WithLabelValues(resultNames[r])
	}
	answers := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nsqlookupd_auth_requests_total",
		Help: "Read requests decided with auth on, by answer: filtered (by the secret's authorizations), admin and producer (no secret, " +
			"read unfiltered), auth_required and auth_failed (401), rate_limited (429), auth_unavailable (503).",
	}, []string{"answer"})
	for r := range m.answers {
		m.answers[r] = answers.WithLabelValues(answerNames[r])
	}
	m.duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "nsqlookupd_auth_query_duration_seconds",
		Help:    "Time a query to the auth servers took, all servers tried included.",
		Buckets: queryBuckets,
	})
	size := func(f func(allowed, bytes, refused int) int) func() float64 {
		return func() float64 { return float64(f(a.cache.sizes())) }
	}
	entriesHelp := "Answers cached, by kind: allowed (a state, until its ttl) and refused (remembered briefly)."
	m.all = collectors{queries, answers, m.duration,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "nsqlookupd_auth_cache_entries", Help: entriesHelp,
			ConstLabels: prometheus.Labels{"kind": "allowed"}}, size(func(n, _, _ int) int { return n })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "nsqlookupd_auth_cache_entries", Help: entriesHelp,
			ConstLabels: prometheus.Labels{"kind": "refused"}}, size(func(_, _, n int) int { return n })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "nsqlookupd_auth_cache_bytes",
			Help: "Estimated memory of the states cached (bounded at 64 MiB)."}, size(func(_, n, _ int) int { return n })),
	}
	return m
}

// collectors is one Collector of several.
type collectors []prometheus.Collector

func (cs collectors) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range cs {
		c.Describe(ch)
	}
}

func (cs collectors) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cs {
		c.Collect(ch)
	}
}
