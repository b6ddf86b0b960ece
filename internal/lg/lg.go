// Package lg is the daemon's leveled logging: a level type usable as a flag,
// and Logf, which drops messages below the configured level and writes the
// rest as "<LEVEL>: <message>" through a standard-library style Logger.
package lg

import (
	"fmt"
	"log"
	"os"
	"strings"
)

// LogLevel is the severity of a message, or the minimum severity logged.
type LogLevel int

// The levels, from least to most severe.
const (
	DEBUG = LogLevel(1)
	INFO  = LogLevel(2)
	WARN  = LogLevel(3)
	ERROR = LogLevel(4)
	FATAL = LogLevel(5)
)

// AppLogFunc is the leveled printf the daemon's parts are handed.
type AppLogFunc func(lvl LogLevel, f string, args ...interface{})

// Logger is satisfied by *log.Logger.
type Logger interface {
	Output(maxdepth int, s string) error
}

// NilLogger discards everything.
type NilLogger struct{}

// Output discards s.
func (l NilLogger) Output(maxdepth int, s string) error { return nil }

// Dropped returns how many lines logger has failed to write, if it counts
// them (a BatchedLogger does), else 0.
func Dropped(logger Logger) uint64 {
	if d, ok := logger.(interface{ Dropped() uint64 }); ok {
		return d.Dropped()
	}
	return 0
}

// Get returns the level; it makes *LogLevel a flag.Getter for go-options.
func (l *LogLevel) Get() interface{} { return *l }

// Set parses s as a level name; it makes *LogLevel a flag.Value.
func (l *LogLevel) Set(s string) error {
	lvl, err := ParseLogLevel(s)
	if err != nil {
		return err
	}
	*l = lvl
	return nil
}

// String returns the word printed in log lines: DEBUG, INFO, WARNING, ERROR or FATAL.
func (l LogLevel) String() string {
	switch l {
	case DEBUG:
		return "DEBUG"
	case INFO:
		return "INFO"
	case WARN:
		return "WARNING"
	case ERROR:
		return "ERROR"
	case FATAL:
		return "FATAL"
	}
	return fmt.Sprintf("LogLevel(%d)", int(l))
}

// ParseLogLevel parses debug, info, warn, error or fatal, in any case.
func ParseLogLevel(levelstr string) (LogLevel, error) {
	switch strings.ToLower(levelstr) {
	case "debug":
		return DEBUG, nil
	case "info":
		return INFO, nil
	case "warn":
		return WARN, nil
	case "error":
		return ERROR, nil
	case "fatal":
		return FATAL, nil
	}
	return 0, fmt.Errorf("invalid log level '%s' (debug, info, warn, error, fatal)", levelstr)
}

// logJoined writes the concatenation of msg through logger as one
// "<LEVEL>: <msg>" line, if msgLevel is at least cfgLevel.
func logJoined(logger Logger, cfgLevel LogLevel, msgLevel LogLevel, msg ...string) {
	if cfgLevel > msgLevel {
		return
	}
	level := msgLevel.String()
	n := len(level) + 2
	for _, m := range msg {
		n += len(m)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(level)
	b.WriteString(": ")
	for _, m := range msg {
		b.WriteString(m)
	}
	logger.Output(3, b.String())
}

// Logf formats the message with fmt and writes it as logJoined does. Lines
// that the busiest paths log (one per registration) are built by their
// callers and given to Log.Join: fmt would be a third of a REGISTER's cost.
func Logf(logger Logger, cfgLevel LogLevel, msgLevel LogLevel, f string, args ...interface{}) {
	if cfgLevel > msgLevel {
		return
	}
	b := fmt.Appendf(append(make([]byte, 0, 128), msgLevel.String()+": "...), f, args...)
	logger.Output(3, string(b))
}

// NewLogger returns the daemon's standard logger: stderr, the given prefix,
// date and time to the microsecond.
func NewLogger(prefix string) *log.Logger {
	return log.New(os.Stderr, prefix, log.Ldate|log.Ltime|log.Lmicroseconds)
}

// LogFatal writes err as a FATAL line to stderr, in format (with prefix
// in text), and exits with status 1. Only main may call it.
func LogFatal(prefix string, format Format, err error) {
	b := NewBatchedLogger(prefix, os.Stderr)
	New(b, Settings{Level: FATAL, Format: format}).Eventf(FATAL, Keys{"reason"}, "%s", err)
	b.Flush()
	os.Exit(1)
}
