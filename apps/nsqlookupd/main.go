// Command nsqlookupd is NSQ's discovery daemon: a drop-in replacement for
// nsqlookupd v1.3.0. Flags beat the --config TOML file, which beats the
// defaults; SIGINT or SIGTERM stops it cleanly with exit status 0, SIGHUP
// reads the file again and reloads what can change while it runs, and a
// closed stderr never stops it (docs/logging.md, Signals and Reload).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/mreiferson/go-options"

	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/internal/version"
	"github.com/lookupd/nsqlookupd/nsqlookupd"
)

// logPrefix is the prefix of the FATAL lines main writes before options
// (and the configured prefix) are known.
const logPrefix = "[nsqlookupd] "

func main() {
	opts := nsqlookupd.NewOptions()
	flagSet := nsqlookupdFlagSet(opts)
	flagSet.Parse(os.Args[1:])

	if flagSet.Lookup("version").Value.(flag.Getter).Get().(bool) {
		fmt.Println(version.String("nsqlookupd"))
		os.Exit(0)
	}

	opts, err := resolveOptions(flagSet)
	if err != nil {
		// in the format the command line asks for, if it does
		lg.LogFatal(logPrefix, flagSet.Lookup("log-format").Value.(flag.Getter).Get().(lg.Format), err)
	}

	daemon, err := nsqlookupd.New(opts)
	if err != nil {
		lg.LogFatal(opts.LogPrefix, opts.LogFormat, err)
	}

	signalChan := make(chan os.Signal, 1)
	signal.Notify(signalChan, syscall.SIGINT, syscall.SIGTERM)
	// A write to stderr (or stdout) whose reader has gone, a log shipper
	// that exited, raises SIGPIPE; unless SIGPIPE is notified, the Go
	// runtime then kills the process, as it killed v1.3.0 (os/signal,
	// "SIGPIPE"). Notified, the write fails with EPIPE instead: the logger
	// counts the line in nsqlookupd_log_lines_dropped_total, and the daemon
	// serves on. The channel is never read: a signal finding it full is
	// dropped, and SIGPIPE needs no action.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	// SIGHUP reloads, one reload at a time; signals that arrive during one
	// make one more (the channel holds one), and never delay a SIGTERM.
	reloadChan := make(chan os.Signal, 1)
	signal.Notify(reloadChan, syscall.SIGHUP)
	go func() {
		for range reloadChan {
			daemon.Reload(func() (*nsqlookupd.Options, error) {
				opts, err := resolveOptions(flagSet)
				if err != nil {
					return nil, err
				}
				return opts, opts.Validate()
			})
		}
	}()

	exitCode := make(chan int, 1)
	go func() {
		// Main logs its own fatal error
		if err := daemon.Main(); err != nil {
			exitCode <- 1
		}
	}()

	code := 0
	select {
	case <-signalChan:
	case code = <-exitCode:
	}
	daemon.Exit()
	os.Exit(code)
}

// resolveOptions reads the --config file (again, on a reload) and resolves the
// options from the command line, the file and the defaults, in that order.
func resolveOptions(flagSet *flag.FlagSet) (*nsqlookupd.Options, error) {
	opts := nsqlookupd.NewOptions()
	cfg, err := loadConfig(flagSet.Lookup("config").Value.String(), opts)
	if err != nil {
		return nil, err
	}
	options.Resolve(opts, flagSet, cfg)
	return opts, nil
}
