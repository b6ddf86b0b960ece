package nsqlookupd

import (
	"fmt"
	"os"
	"time"

	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/access"
	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/auth"
	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/tlsconfig"
)

// Logger receives the daemon's log lines; *log.Logger satisfies it.
type Logger lg.Logger

// Options configures an NSQLookupd. The flag tags name the command-line
// flags; each config-file key is the flag name with "-" replaced by "_",
// or the cfg tag of a list (its plural name, as nsqd names its lists).
type Options struct {
	// LogLevel is the least severe level logged (default INFO).
	LogLevel lg.LogLevel `flag:"log-level"`
	// LogPrefix starts every log line (default "[nsqlookupd] ").
	LogPrefix string `flag:"log-prefix"`
	// Logger receives the log lines; nil means stderr with LogPrefix.
	Logger        Logger
	LogFormat     lg.Format    `flag:"log-format"`      // text (the default) or json (docs/logging.md)
	HTTPAccessLog lg.AccessLog `flag:"http-access-log"` // requests logged: all (the default), none or ignore-probes

	// TCPAddress is where nsqd connect to register (default 0.0.0.0:4160).
	TCPAddress string `flag:"tcp-address"`
	// HTTPAddress serves the HTTP API and profiling (default 0.0.0.0:4161).
	HTTPAddress string `flag:"http-address"`
	// BroadcastAddress is this lookupd's address as told to nsqd in the
	// IDENTIFY answer (default: the OS hostname).
	BroadcastAddress string `flag:"broadcast-address"`

	// InactiveProducerTimeout is how long a producer stays active after its
	// last IDENTIFY or PING (default 5m).
	InactiveProducerTimeout time.Duration `flag:"inactive-producer-timeout"`
	// TombstoneLifetime is how long a tombstoned producer stays hidden from
	// /lookup for its topic (default 45s).
	TombstoneLifetime time.Duration `flag:"tombstone-lifetime"`

	// IdentifyTimeout is how long a new TCP connection has to send the
	// protocol magic and a successful IDENTIFY before it is closed; 0
	// disables it (default 30s; nsqd identifies at once).
	IdentifyTimeout time.Duration `flag:"identify-timeout"`

	// DisablePprof removes the /debug/pprof routes, which then answer 404
	// like any unknown path (default false: profiling is served).
	DisablePprof bool `flag:"disable-pprof"`
	// BlockProfileRate is passed to runtime.SetBlockProfileRate at start-up:
	// 0 leaves the block profile off, 1 records every blocking event,
	// N samples one per N nanoseconds blocked (default 0).
	BlockProfileRate int `flag:"block-profile-rate"`
	// MutexProfileFraction is passed to runtime.SetMutexProfileFraction at
	// start-up: 0 leaves the mutex profile off, N samples 1 in N
	// contention events (default 0).
	MutexProfileFraction int `flag:"mutex-profile-fraction"`

	// ProducerReadTimeout is how long an identified registration connection
	// may stay silent (not even a PING) before it is closed and its producer
	// removed, as on any disconnect; 0 disables it (default 60s: nsqd PINGs
	// every 15s, so a minute of silence is four missed heartbeats).
	ProducerReadTimeout time.Duration `flag:"producer-read-timeout"`
	// HTTPWriteTimeout is how long an HTTP API answer may take to be taken
	// by its client, from the start of the request; after it, the answer is
	// abandoned and the connection closed. pprof's profile and trace get
	// their seconds=N on top. 0 disables it (default 60s).
	HTTPWriteTimeout time.Duration `flag:"http-write-timeout"`

	// HTTPSAddress serves the HTTP port's router (the API, profiling and
	// everything else) over TLS; empty, the default, serves no HTTPS. It
	// needs TLSCert and TLSKey. As nsqd's option of the same name.
	HTTPSAddress string `flag:"https-address"`
	// TLSCert is the PEM file of the HTTPS server's certificate, followed
	// by any intermediates; TLSKey is the PEM file of its private key. Both
	// or neither. A new pair written over them (or renamed into their
	// place) is served from the next handshake on, without a restart; a
	// pair that fails to load is logged and the previous one kept.
	TLSCert string `flag:"tls-cert"`
	TLSKey  string `flag:"tls-key"`
	// TLSClientAuthPolicy decides what the HTTPS port asks of client
	// certificates: "" (the default) verifies one against TLSRootCAFile if
	// the client gives one (without TLSRootCAFile it asks for none, as
	// nsqd), "require" demands one but does not verify it,
	// "require-verify" demands one signed by TLSRootCAFile (or, without
	// it, by the system's roots). Any policy implies TLSRequired, as in
	// nsqd.
	TLSClientAuthPolicy string `flag:"tls-client-auth-policy"`
	// TLSRootCAFile is a PEM bundle of the certificate authorities that
	// client certificates are verified against; empty means the system's.
	TLSRootCAFile string `flag:"tls-root-ca-file"`
	// TLSMinVersion is the oldest TLS version the HTTPS port accepts:
	// tls1.0, tls1.1, tls1.2 or tls1.3, in any case; empty means the
	// default, tls1.2. (nsqd v1.3.0 defaults to tls1.0.)
	TLSMinVersion string `flag:"tls-min-version"`
	// TLSRequired makes the plain HTTP port answer every request 403 with
	// {"message": "TLS_REQUIRED", "https_port": N}, as nsqd does: nsqadmin
	// and nsqd then retry over HTTPS. It needs HTTPSAddress.
	TLSRequired bool `flag:"tls-required"`

	// Access control (README, "Access control"; each field's meaning is
	// that of its access.Config field). All off by default: anyone who
	// reaches a port may use it, as in v1.3.0. A list option is given as a
	// repeated or comma-separated flag, or in the config file as an array
	// under the plural key in its cfg tag, as nsqd names its lists.
	TCPAllow                   []string `flag:"tcp-allow" cfg:"tcp_allow_networks"`                                 // who may register
	HTTPAdminAllow             []string `flag:"http-admin-allow" cfg:"http_admin_allow_networks"`                   // who may use the admin POSTs and /debug/pprof
	HTTPAdminRequireClientCert bool     `flag:"http-admin-require-client-cert"`                                     // those need a verified client certificate
	HTTPAdminClientAllowedSANs []string `flag:"http-admin-client-allowed-san" cfg:"http_admin_client_allowed_sans"` // carrying one of these SANs

	// Authorization (docs/authorization.md), with nsqd's options: with
	// auth servers, reads need a secret and answer what it may reach.
	AuthHTTPAddresses        []string      `flag:"auth-http-address" cfg:"auth_http_addresses"` // host:port or URL of each auth server; none: off
	HTTPClientConnectTimeout time.Duration `flag:"http-client-connect-timeout"`                 // connecting to an auth server (default 2s)
	HTTPClientRequestTimeout time.Duration `flag:"http-client-request-timeout"`                 // a whole auth query (default 5s)
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	hostname, err := os.Hostname()
	if err != nil {
		hostname = "localhost"
	}
	return &Options{
		LogPrefix:               "[nsqlookupd] ",
		LogLevel:                lg.INFO,
		TCPAddress:              "0.0.0.0:4160",
		HTTPAddress:             "0.0.0.0:4161",
		BroadcastAddress:        hostname,
		InactiveProducerTimeout: 300 * time.Second,
		TombstoneLifetime:       45 * time.Second,
		IdentifyTimeout:         30 * time.Second,
		ProducerReadTimeout:     60 * time.Second,
		HTTPWriteTimeout:        60 * time.Second,
		TLSMinVersion:           "tls1.2",

		HTTPClientConnectTimeout: 2 * time.Second, // nsqd's defaults
		HTTPClientRequestTimeout: 5 * time.Second,
	}
}

// Validate reports the first option that cannot work.
func (o *Options) Validate() error {
	switch {
	case o.LogLevel < lg.DEBUG || o.LogLevel > lg.FATAL:
		return fmt.Errorf("invalid log level %d", int(o.LogLevel))
	case o.InactiveProducerTimeout < 0:
		return fmt.Errorf("inactive-producer-timeout must not be negative (got %s)", o.InactiveProducerTimeout)
	case o.TombstoneLifetime < 0:
		return fmt.Errorf("tombstone-lifetime must not be negative (got %s)", o.TombstoneLifetime)
	case o.IdentifyTimeout < 0:
		return fmt.Errorf("identify-timeout must not be negative (got %s)", o.IdentifyTimeout)
	case o.BlockProfileRate < 0:
		return fmt.Errorf("block-profile-rate must not be negative (got %d)", o.BlockProfileRate)
	case o.MutexProfileFraction < 0:
		return fmt.Errorf("mutex-profile-fraction must not be negative (got %d)", o.MutexProfileFraction)
	case o.ProducerReadTimeout < 0:
		return fmt.Errorf("producer-read-timeout must not be negative (got %s)", o.ProducerReadTimeout)
	case o.HTTPWriteTimeout < 0:
		return fmt.Errorf("http-write-timeout must not be negative (got %s)", o.HTTPWriteTimeout)
	}
	if err := o.tlsOptions().Validate(); err != nil {
		return err
	}
	if err := o.accessConfig().Validate(); err != nil {
		return err
	}
	return o.authConfig().Validate()
}

// authConfig is the auth options; New adds the admin rule.
func (o *Options) authConfig() auth.Config {
	return auth.Config{Servers: o.AuthHTTPAddresses, ConnectTimeout: o.HTTPClientConnectTimeout,
		RequestTimeout: o.HTTPClientRequestTimeout, RootCAFile: o.TLSRootCAFile}
}

// accessConfig is the access rules of the options.
func (o *Options) accessConfig() access.Config {
	return access.Config{TCPAllow: o.TCPAllow, AdminAllow: o.HTTPAdminAllow,
		RequireClientCert: o.HTTPAdminRequireClientCert, ClientSANs: o.HTTPAdminClientAllowedSANs,
		HTTPS: o.HTTPSAddress != "", RootCA: o.TLSRootCAFile != "", ClientAuthPolicy: o.TLSClientAuthPolicy,
		AdminRuleRequired: len(o.AuthHTTPAddresses) > 0}
}

// tlsOptions returns the TLS options, for internal/tlsconfig.
func (o *Options) tlsOptions() tlsconfig.Options {
	return tlsconfig.Options{HTTPSAddress: o.HTTPSAddress, Cert: o.TLSCert, Key: o.TLSKey,
		ClientAuthPolicy: o.TLSClientAuthPolicy, RootCAFile: o.TLSRootCAFile,
		MinVersion: o.TLSMinVersion, RequireTLS: o.TLSRequired}
}
