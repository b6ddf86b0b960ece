package main

import (
	"io"
	"net"
	"net/http"
	"slices"
)

// -auth measures each binary a second time with auth on
// (docs/authorization.md): started with --auth-http-address pointing at an
// auth server of nsqd's protocol that the harness runs, every request
// carrying a secret that server grants every topic and channel. The
// answers are then the unfiltered ones, and the difference is what the
// secret's check (cached after the first) and the filtering cost.
const benchSecret = "bench-secret"

// startAuthServer serves nsqd's auth protocol on 127.0.0.1: benchSecret
// may publish and subscribe to everything for an hour; any other is 403.
func startAuthServer() (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/auth" || req.URL.Query().Get("secret") != benchSecret {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		io.WriteString(w, `{"ttl":3600,"identity":"bench","authorizations":[{"topic":".*","channels":[".*"],"permissions":["subscribe","publish"]}]}`)
	})}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }, nil
}

// withAuth returns o for a binary's run with auth on: its daemon flags
// name the auth server (the admin rule keeps the block profile readable),
// and its requests carry the secret.
func (o *options) withAuth(authAddr string) *options {
	a := *o
	a.daemonFlags = append(slices.Clone(o.daemonFlags), "--auth-http-address="+authAddr, "--http-admin-allow=127.0.0.1")
	a.secret, a.label = benchSecret, " +auth"
	return &a
}
