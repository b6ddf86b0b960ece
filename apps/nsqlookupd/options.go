package main

import (
	"flag"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/lookupd/nsqlookupd/nsqlookupd"
)

// nsqlookupdFlagSet declares every flag, with opts' values as defaults.
func nsqlookupdFlagSet(opts *nsqlookupd.Options) *flag.FlagSet {
	flagSet := flag.NewFlagSet("nsqlookupd", flag.ExitOnError)

	flagSet.String("config", "", "path to config file")
	flagSet.Bool("version", false, "print version string")

	logLevel := opts.LogLevel
	flagSet.Var(&logLevel, "log-level", "set log verbosity: debug, info, warn, error, or fatal")
	flagSet.String("log-prefix", "[nsqlookupd] ", "log message prefix")
	logFormat := opts.LogFormat
	flagSet.Var(&logFormat, "log-format", "log line format: text (v1.3.0's lines) or json (one object a line: time, level, msg and the event's fields)")
	accessLog := opts.HTTPAccessLog
	flagSet.Var(&accessLog, "http-access-log", "HTTP requests logged: all, none, or ignore-probes (all but /ping, /info and /metrics answered 200)")
	flagSet.Bool("verbose", false, "[deprecated] has no effect, use --log-level")

	flagSet.String("tcp-address", opts.TCPAddress, "<addr>:<port> to listen on for TCP clients")
	flagSet.String("http-address", opts.HTTPAddress, "<addr>:<port> to listen on for HTTP clients")
	flagSet.String("broadcast-address", opts.BroadcastAddress, "address of this lookupd node, (default to the OS hostname)")

	flagSet.Duration("inactive-producer-timeout", opts.InactiveProducerTimeout, "duration of time a producer will remain in the active list since its last ping")
	flagSet.Duration("tombstone-lifetime", opts.TombstoneLifetime, "duration of time a producer will remain tombstoned if registration remains")

	flagSet.Duration("identify-timeout", opts.IdentifyTimeout, "time a new TCP connection has to send the protocol magic and IDENTIFY before it is closed (0 disables)")
	flagSet.Bool("disable-pprof", opts.DisablePprof, "do not serve the /debug/pprof endpoints (they answer 404)")
	flagSet.Int("block-profile-rate", opts.BlockProfileRate, "runtime.SetBlockProfileRate at start-up: 0 off, 1 every blocking event, N one sample per N ns blocked")
	flagSet.Int("mutex-profile-fraction", opts.MutexProfileFraction, "runtime.SetMutexProfileFraction at start-up: 0 off, N one in N contention events")
	flagSet.Duration("producer-read-timeout", opts.ProducerReadTimeout, "time an identified nsqd connection may stay silent (not even a PING) before it is closed and its producer removed (0 disables)")
	flagSet.Duration("http-write-timeout", opts.HTTPWriteTimeout, "time an HTTP API answer has to be taken by its client before the connection is closed; pprof profile and trace get their seconds on top (0 disables)")

	// HTTPS, with nsqd's TLS options
	flagSet.String("https-address", opts.HTTPSAddress, "<addr>:<port> to listen on for HTTPS clients (empty: no HTTPS)")
	flagSet.String("tls-cert", opts.TLSCert, "path to the HTTPS certificate file (PEM; reloaded when it changes)")
	flagSet.String("tls-key", opts.TLSKey, "path to the HTTPS private key file (PEM; reloaded when it changes)")
	flagSet.String("tls-client-auth-policy", opts.TLSClientAuthPolicy, "client certificate policy: empty verifies one against --tls-root-ca-file if given, 'require' demands one, 'require-verify' demands one that verifies (any policy implies --tls-required)")
	flagSet.String("tls-root-ca-file", opts.TLSRootCAFile, "path to the certificate authority file client certificates are verified against")
	flagSet.String("tls-min-version", opts.TLSMinVersion, "minimum TLS version accepted: 'tls1.0', 'tls1.1', 'tls1.2' or 'tls1.3'")
	flagSet.Bool("tls-required", opts.TLSRequired, "require TLS for HTTP clients: the HTTP port answers every request 403 TLS_REQUIRED with the HTTPS port")

	// access control (nsqlookupd/internal/access); lists: repeat the flag or separate items with commas
	flagSet.Var(newListFlag(opts.TCPAllow), "tcp-allow", "CIDR or address that may register over TCP; others are reset at accept (may be given multiple times, or comma-separated; default: any)")
	flagSet.Var(newListFlag(opts.HTTPAdminAllow), "http-admin-allow", "CIDR or address that may use the admin POSTs and /debug/pprof on the HTTP and HTTPS ports; others get 403 (may be given multiple times, or comma-separated; default: any)")
	flagSet.Bool("http-admin-require-client-cert", opts.HTTPAdminRequireClientCert, "the admin POSTs and /debug/pprof need a client certificate verified against --tls-root-ca-file (over HTTPS; on the plain port they answer 403 TLS_REQUIRED); reads need none")
	flagSet.Var(newListFlag(opts.HTTPAdminClientAllowedSANs), "http-admin-client-allowed-san", "with --http-admin-require-client-cert, a subject alternative name (DNS, email, IP or URI) the certificate must carry (may be given multiple times, or comma-separated; default: any)")

	// authorization with nsqd's auth servers (nsqlookupd/internal/auth), nsqd's flags
	flagSet.Var(newRepeatedFlag(opts.AuthHTTPAddresses), "auth-http-address", "<addr>:<port> or a full url of an auth server, as nsqd's: reads then need a secret (Authorization: Bearer) and answer what it may reach (may be given multiple times)")
	flagSet.Duration("http-client-connect-timeout", opts.HTTPClientConnectTimeout, "timeout for connecting to an auth server")
	flagSet.Duration("http-client-request-timeout", opts.HTTPClientRequestTimeout, "timeout for an auth query")

	return flagSet
}

// listFlag is a list option's flag: each use adds its comma-separated
// items (nsqd's list flags are repeated; commas are accepted too). Get
// returns the items, for go-options.
type listFlag []string

func newListFlag(items []string) *listFlag {
	l := listFlag(append([]string(nil), items...))
	return &l
}

func (l *listFlag) Set(s string) error {
	*l = append(*l, strings.Split(s, ",")...)
	return nil
}

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Get() interface{} { return []string(*l) }

// repeatedFlag is a list option's flag whose items may hold commas (a
// URL): each use adds one item, as nsqd's list flags do.
type repeatedFlag struct{ listFlag }

func newRepeatedFlag(items []string) *repeatedFlag {
	return &repeatedFlag{*newListFlag(items)}
}

func (l *repeatedFlag) Set(s string) error {
	l.listFlag = append(l.listFlag, s)
	return nil
}

// loadConfig reads the TOML file at path ("" means none) and checks each
// known key's value, so that a bad file is one clear error instead of a
// failure deep in option resolution. A value of a type of its own
// (log_level, log_format, http_access_log) is converted to it.
func loadConfig(path string, opts *nsqlookupd.Options) (map[string]interface{}, error) {
	cfg := map[string]interface{}{}
	if path == "" {
		return cfg, nil
	}
	if _, err := toml.DecodeFile(path, &cfg); err != nil {
		return nil, fmt.Errorf("failed to load config file %s - %s", path, err)
	}
	if err := validateConfig(cfg, opts); err != nil {
		return nil, fmt.Errorf("invalid config file %s - %s", path, err)
	}
	return cfg, nil
}

// validateConfig checks each key of cfg that names an option against the
// option's type, as go-options will coerce it.
func validateConfig(cfg map[string]interface{}, opts *nsqlookupd.Options) error {
	typ := reflect.TypeOf(*opts)
	for i := 0; i < typ.NumField(); i++ {
		field := typ.Field(i)
		name := configKey(field)
		// A list's key is plural (cfg tag): the flag's own name in the
		// file would be ignored, leaving the option off.
		if flagKey := strings.ReplaceAll(field.Tag.Get("flag"), "-", "_"); flagKey != name {
			if _, ok := cfg[flagKey]; ok {
				return fmt.Errorf("%s: the config key of --%s is %s", flagKey, field.Tag.Get("flag"), name)
			}
		}
		v, ok := cfg[name]
		if name == "" || !ok {
			continue
		}
		// an option of a type of its own (the log's level, format, access
		// choice) is parsed as its flag parses it
		if value, ok := reflect.New(field.Type).Interface().(flag.Value); ok && field.Type.Kind() != reflect.Slice {
			if err := value.Set(fmt.Sprint(v)); err != nil {
				return fmt.Errorf("failed parsing %s %+v", name, v)
			}
			cfg[name] = reflect.ValueOf(value).Elem().Interface()
			continue
		}
		if err := checkValue(field.Type, v); err != nil {
			return fmt.Errorf("%s: %s", name, err)
		}
	}
	return nil
}

// configKey returns the config-file key of an Options field: its cfg tag
// (a list's plural name), else the flag name with "-" replaced by "_", as
// go-options resolves it; "" for a field that is no option.
func configKey(field reflect.StructField) string {
	if name := field.Tag.Get("cfg"); name != "" {
		return name
	}
	return strings.ReplaceAll(field.Tag.Get("flag"), "-", "_")
}

var durationType = reflect.TypeOf(time.Duration(0))

func checkValue(t reflect.Type, v interface{}) error {
	switch {
	case t == durationType:
		switch d := v.(type) {
		case int64:
			return nil // milliseconds
		case string:
			_, err := time.ParseDuration(d)
			return err
		}
		return fmt.Errorf("want a duration string such as \"45s\" or an integer of milliseconds, got %v", v)
	case t.Kind() == reflect.String:
		if _, ok := v.(string); !ok {
			return fmt.Errorf("want a string, got %v", v)
		}
	case t.Kind() == reflect.Bool:
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("want true or false, got %v", v)
		}
	case t.Kind() == reflect.Int:
		if _, ok := v.(int64); !ok {
			return fmt.Errorf("want an integer, got %v", v)
		}
	case t.Kind() == reflect.Slice: // an array of strings, or one string of comma-separated items
		if _, ok := v.(string); ok {
			return nil
		}
		items, ok := v.([]interface{})
		for _, item := range items {
			if _, isString := item.(string); !isString {
				ok = false
			}
		}
		if !ok {
			return fmt.Errorf("want an array of strings, got %v", v)
		}
	}
	return nil
}
