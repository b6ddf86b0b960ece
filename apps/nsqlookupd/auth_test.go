package main

import (
	"fmt"
	"testing"
)

// TestAuthConfigKeys: the auth options come from the config file under
// nsqd's keys (auth_http_addresses an array, or comma-separated), and from
// the command line as nsqd's flags, which beat the file; a repeated
// --auth-http-address adds one address each time, commas and all (a URL
// may hold them), as nsqd's flag. The defaults are nsqd's.
func TestAuthConfigKeys(t *testing.T) {
	path := writeConfig(t, `
auth_http_addresses = ["127.0.0.1:4181", "https://auth.example/nsq/auth"]
http_client_connect_timeout = "3s"
http_client_request_timeout = 7000
`)
	opts, err := resolve(t, "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%q %s %s", opts.AuthHTTPAddresses, opts.HTTPClientConnectTimeout, opts.HTTPClientRequestTimeout)
	if want := `["127.0.0.1:4181" "https://auth.example/nsq/auth"] 3s 7s`; got != want {
		t.Errorf("from the file: got %s; want %s", got, want)
	}

	opts, err = resolve(t, "--config", path, "--auth-http-address=10.0.0.1:4181",
		"--auth-http-address", "http://auth.example/a,b", "--http-client-request-timeout=1s")
	if err != nil {
		t.Fatal(err)
	}
	got = fmt.Sprintf("%q %s %s", opts.AuthHTTPAddresses, opts.HTTPClientConnectTimeout, opts.HTTPClientRequestTimeout)
	if want := `["10.0.0.1:4181" "http://auth.example/a,b"] 3s 1s`; got != want {
		t.Errorf("flags over the file: got %s; want %s", got, want)
	}

	opts, err = resolve(t)
	if err != nil {
		t.Fatal(err)
	}
	got = fmt.Sprintf("%q %s %s", opts.AuthHTTPAddresses, opts.HTTPClientConnectTimeout, opts.HTTPClientRequestTimeout)
	if want := `[] 2s 5s`; got != want {
		t.Errorf("defaults: got %s; want %s", got, want)
	}
}

// TestAuthBadConfig: each bad auth option, by flag or config file, stops
// start-up with exactly one FATAL line and exit status 1.
func TestAuthBadConfig(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"empty address", []string{"--auth-http-address="},
			"FATAL: --auth-http-address: empty address"},
		{"no port", []string{"--auth-http-address=127.0.0.1"},
			`FATAL: --auth-http-address: "127.0.0.1" is neither host:port nor a URL`},
		{"two in one", []string{"--auth-http-address=127.0.0.1:4181,127.0.0.1:4182"},
			`FATAL: --auth-http-address: "127.0.0.1:4181,127.0.0.1:4182" is neither host:port nor a URL`},
		{"not http", []string{"--auth-http-address=ftp://auth.example/auth"},
			`FATAL: --auth-http-address: "ftp://auth.example/auth": the scheme must be http or https`},
		{"no host", []string{"--auth-http-address=http:///auth"},
			`FATAL: --auth-http-address: "http:///auth" has no host`},
		{"zero connect timeout", []string{"--auth-http-address=127.0.0.1:4181", "--http-client-connect-timeout=0"},
			"FATAL: --http-client-connect-timeout must be positive (got 0s)"},
		{"negative request timeout", []string{"--http-client-request-timeout=-1s"},
			"FATAL: --http-client-request-timeout must be positive (got -1s)"},
		{"config file: empty address", []string{"--config", writeConfig(t, `auth_http_addresses = ["127.0.0.1:4181", ""]`)},
			"FATAL: --auth-http-address: empty address"},
		{"config file: unparsable", []string{"--config", writeConfig(t, `auth_http_addresses = "auth.example"`)},
			`FATAL: --auth-http-address: "auth.example" is neither host:port nor a URL`},
		{"config file: not strings", []string{"--config", writeConfig(t, `auth_http_addresses = [4181]`)},
			"auth_http_addresses: want an array of strings, got [4181]"},
		{"config file: the flag's name as key", []string{"--config", writeConfig(t, `auth_http_address = ["127.0.0.1:4181"]`)},
			"auth_http_address: the config key of --auth-http-address is auth_http_addresses"},
		{"config file: bad timeout", []string{"--config", writeConfig(t, `http_client_request_timeout = "soon"`)},
			"FATAL: invalid config file"},
		{"config file: zero timeout", []string{"--config", writeConfig(t, `http_client_connect_timeout = "0s"`)},
			"FATAL: --http-client-connect-timeout must be positive (got 0s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			exitsFatal(t, tt.args, tt.want)
		})
	}
}
