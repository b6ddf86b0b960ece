package main

import (
	"fmt"
	"testing"

	"github.com/lookupd/nsqlookupd/internal/test"
)

// TestAccessConfigKeys: the access lists come from the config file under
// their plural keys, as TOML arrays or comma-separated strings; from the
// command line as repeated or comma-separated flags, which beat the file.
// Without them, every list is empty and the certificate option off.
func TestAccessConfigKeys(t *testing.T) {
	path := writeConfig(t, `
tcp_allow_networks = ["10.0.0.0/8", "192.168.1.7"]
http_admin_allow_networks = "10.1.0.0/16,127.0.0.1"
http_admin_require_client_cert = true
http_admin_client_allowed_sans = ["nsqadmin.example.com", "spiffe://example.com/nsqadmin"]
`)
	opts, err := resolve(t, "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%q %q %v %q", opts.TCPAllow, opts.HTTPAdminAllow, opts.HTTPAdminRequireClientCert, opts.HTTPAdminClientAllowedSANs)
	want := `["10.0.0.0/8" "192.168.1.7"] ["10.1.0.0/16" "127.0.0.1"] true ["nsqadmin.example.com" "spiffe://example.com/nsqadmin"]`
	if got != want {
		t.Errorf("from the file: got %s; want %s", got, want)
	}

	opts, err = resolve(t, "--config", path, "--tcp-allow", "127.0.0.1", "--tcp-allow=::1,fd00::/8",
		"--http-admin-client-allowed-san=a.example.com,b.example.com")
	if err != nil {
		t.Fatal(err)
	}
	got = fmt.Sprintf("%q %q %q", opts.TCPAllow, opts.HTTPAdminAllow, opts.HTTPAdminClientAllowedSANs)
	want = `["127.0.0.1" "::1" "fd00::/8"] ["10.1.0.0/16" "127.0.0.1"] ["a.example.com" "b.example.com"]`
	if got != want {
		t.Errorf("flags over the file: got %s; want %s", got, want)
	}

	defaults, err := resolve(t)
	if err != nil {
		t.Fatal(err)
	}
	if defaults.TCPAllow != nil || defaults.HTTPAdminAllow != nil || defaults.HTTPAdminRequireClientCert || defaults.HTTPAdminClientAllowedSANs != nil {
		t.Errorf("defaults: got %q %q %v %q; want no rule", defaults.TCPAllow, defaults.HTTPAdminAllow,
			defaults.HTTPAdminRequireClientCert, defaults.HTTPAdminClientAllowedSANs)
	}
}

// TestAccessBadConfig: each bad access rule, by flag or config file, stops
// start-up with exactly one FATAL line and exit status 1.
func TestAccessBadConfig(t *testing.T) {
	ca := test.NewCA(t, "test CA")
	certFile, keyFile := ca.Issue(t, "nsqlookupd").WriteFiles(t)
	https := []string{"--https-address=127.0.0.1:0", "--tls-cert=" + certFile, "--tls-key=" + keyFile}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"malformed CIDR", []string{"--tcp-allow=10.0.0.0/33"},
			`FATAL: --tcp-allow: "10.0.0.0/33" is neither an address nor a CIDR - netip.ParsePrefix("10.0.0.0/33"): prefix length out of range`},
		{"malformed address", []string{"--http-admin-allow=10.0.0.300"},
			`FATAL: --http-admin-allow: "10.0.0.300" is neither an address nor a CIDR - ParseAddr("10.0.0.300"): IPv4 field has value >255`},
		{"a host name", []string{"--tcp-allow=nsqd-1.example.com"},
			`FATAL: --tcp-allow: "nsqd-1.example.com" is neither an address nor a CIDR`},
		{"empty item", []string{"--tcp-allow=10.0.0.0/8,"},
			`FATAL: --tcp-allow: empty item in "10.0.0.0/8,"`},
		{"empty flag", []string{"--http-admin-allow="},
			`FATAL: --http-admin-allow: empty item in ""`},
		{"bits past the length", []string{"--tcp-allow=10.0.0.1/8"},
			`FATAL: --tcp-allow: "10.0.0.1/8" has bits set past its length: the network is 10.0.0.0/8, the address alone 10.0.0.1/32`},
		{"a zone", []string{"--tcp-allow=fe80::1%eth0"},
			`FATAL: --tcp-allow: "fe80::1%eth0" has a zone; give the address alone`},
		{"empty SAN", append(https, "--tls-root-ca-file="+ca.CertFile, "--http-admin-require-client-cert", "--http-admin-client-allowed-san=a.example.com,,b"),
			`FATAL: --http-admin-client-allowed-san: empty item in "a.example.com,,b"`},
		{"client cert without HTTPS", []string{"--http-admin-require-client-cert"},
			"FATAL: --http-admin-require-client-cert needs --https-address and --tls-root-ca-file"},
		{"client cert without a CA", append(https, "--http-admin-require-client-cert"),
			"FATAL: --http-admin-require-client-cert needs --tls-root-ca-file"},
		{"client cert not verified", append(https, "--http-admin-require-client-cert", "--tls-root-ca-file="+ca.CertFile, "--tls-client-auth-policy=require"),
			"FATAL: --http-admin-require-client-cert needs certificates verified: --tls-client-auth-policy empty or require-verify, not require"},
		{"SANs without the client cert option", append(https, "--http-admin-client-allowed-san=nsqadmin.example.com"),
			"FATAL: --http-admin-client-allowed-san needs --http-admin-require-client-cert"},
		{"config file: malformed CIDR", []string{"--config", writeConfig(t, `tcp_allow_networks = ["10.0.0.0/8", "10.1/16"]`)},
			`FATAL: --tcp-allow: "10.1/16" is neither an address nor a CIDR`},
		{"config file: empty item", []string{"--config", writeConfig(t, `http_admin_allow_networks = ["10.0.0.0/8", ""]`)},
			`FATAL: --http-admin-allow: empty item in "10.0.0.0/8,"`},
		{"config file: empty string", []string{"--config", writeConfig(t, `tcp_allow_networks = ""`)},
			`FATAL: --tcp-allow: empty item in ""`},
		{"config file: not strings", []string{"--config", writeConfig(t, `tcp_allow_networks = [10, 11]`)},
			"FATAL: invalid config file"},
		{"config file: not a list", []string{"--config", writeConfig(t, `http_admin_allow_networks = 10`)},
			"http_admin_allow_networks: want an array of strings, got 10"},
		{"config file: the flag's name as key", []string{"--config", writeConfig(t, `tcp_allow = ["10.0.0.0/8"]`)},
			"tcp_allow: the config key of --tcp-allow is tcp_allow_networks"},
		{"config file: client cert without HTTPS", []string{"--config", writeConfig(t, `http_admin_require_client_cert = true`)},
			"FATAL: --http-admin-require-client-cert needs --https-address and --tls-root-ca-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exitsFatal(t, tt.args, tt.want)
		})
	}
}
