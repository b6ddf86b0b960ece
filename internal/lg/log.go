package lg

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Format is how a Log writes its lines.
type Format int32

// The formats (docs/logging.md, Logs).
const (
	// Text writes v1.3.0's lines, byte for byte: "<prefix><date> <time>
	// <LEVEL>: <message>".
	Text Format = iota
	// JSON writes one object per line: time (RFC 3339, UTC), level, msg
	// (the text line's message) and the event's fields.
	JSON
)

// ParseFormat parses text or json, in any case.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "text":
		return Text, nil
	case "json":
		return JSON, nil
	}
	return 0, fmt.Errorf("invalid log format %q (text, json)", s)
}

// String returns text or json.
func (f Format) String() string {
	if f == JSON {
		return "json"
	}
	return "text"
}

// Set parses s; it makes *Format a flag.Value.
func (f *Format) Set(s string) (err error) {
	*f, err = ParseFormat(s)
	return err
}

// Get returns the format; it makes *Format a flag.Getter for go-options.
func (f *Format) Get() interface{} { return *f }

// AccessLog chooses which HTTP requests the access log has a line for.
type AccessLog int32

// The choices (docs/logging.md, The access log).
const (
	// AccessAll logs every request, as v1.3.0.
	AccessAll AccessLog = iota
	// AccessNone logs no request.
	AccessNone
	// AccessIgnoreProbes logs every request but a probe's that succeeded:
	// health checks and scrapes make no line, lookups and errors do.
	AccessIgnoreProbes
)

var accessLogNames = []string{AccessAll: "all", AccessNone: "none", AccessIgnoreProbes: "ignore-probes"}

// ParseAccessLog parses all, none or ignore-probes, in any case.
func ParseAccessLog(s string) (AccessLog, error) {
	for a, name := range accessLogNames {
		if strings.EqualFold(s, name) {
			return AccessLog(a), nil
		}
	}
	return 0, fmt.Errorf("invalid access log choice %q (all, none, ignore-probes)", s)
}

// String returns all, none or ignore-probes.
func (a AccessLog) String() string {
	if a >= 0 && int(a) < len(accessLogNames) {
		return accessLogNames[a]
	}
	return fmt.Sprintf("AccessLog(%d)", int(a))
}

// Set parses s; it makes *AccessLog a flag.Value.
func (a *AccessLog) Set(s string) (err error) {
	*a, err = ParseAccessLog(s)
	return err
}

// Get returns the choice; it makes *AccessLog a flag.Getter for go-options.
func (a *AccessLog) Get() interface{} { return *a }

// Settings are what a Log does with a line; Set changes them while the
// daemon runs.
type Settings struct {
	Level  LogLevel  // the least severe level written
	Format Format    // text or JSON
	Access AccessLog // which HTTP requests are logged
}

// Keys name the arguments of an event that are its fields in JSON, by
// position: Keys{"remote_address", "", "topic"} makes the first argument
// "remote_address" and the third "topic"; "" leaves one out. The text
// line is the same with or without them.
type Keys []string

// Log is the daemon's log. Every line goes through it to one Logger: as
// text, v1.3.0's lines byte for byte, or as JSON, one object per line.
// Its Settings can change at any time (a reload), without a lock: a line
// is written whole in the settings it found.
//
// An event is logged once, with Eventf or Join, by its text message and
// the values it names: the text format writes the message, the JSON format
// writes the message as msg and each value named by the Keys as a field of
// its own. Logf logs a line that has no fields.
//
// The JSON lines are encoded as the text lines are, straight into the
// writer's buffer: log/slog's JSONHandler took five times as long as a
// text line (a REGISTER's line: 3.5 µs against 0.7 µs), where this takes
// about as long. The tests check every line against what slog would
// write.
type Log struct {
	dest     Logger
	batch    *BatchWriter     // dest's writer, if dest is a BatchedLogger
	now      func() time.Time // time.Now; tests set another
	settings atomic.Pointer[Settings]
	stamp    atomic.Pointer[stamp] // the JSON time of the last second seen
}

// New returns a Log writing to dest in s. The JSON lines of a
// BatchedLogger go to its writer as they are (no prefix, no date); those
// of another Logger go to its Output, one line a call.
func New(dest Logger, s Settings) *Log {
	l := &Log{dest: dest, now: time.Now}
	if b, ok := dest.(*BatchedLogger); ok {
		l.batch, l.now = b.w, b.now
	}
	l.Set(s)
	return l
}

// Set changes the settings from the next line on.
func (l *Log) Set(s Settings) { l.settings.Store(&s) }

// Settings returns the settings in force.
func (l *Log) Settings() Settings { return *l.settings.Load() }

// Logs reports whether a line at level is written.
func (l *Log) Logs(level LogLevel) bool { return l.settings.Load().Level <= level }

// LogsRequest reports whether an HTTP request is access-logged: at INFO,
// and as the access log's choice says, probe being true for a probe's
// request that succeeded.
func (l *Log) LogsRequest(probe bool) bool {
	s := l.settings.Load()
	return s.Level <= INFO && (s.Access == AccessAll || s.Access == AccessIgnoreProbes && !probe)
}

// Logf logs a line without fields, formatted as fmt.Sprintf does.
func (l *Log) Logf(level LogLevel, f string, args ...interface{}) {
	l.Eventf(level, nil, f, args...)
}

// Eventf logs an event: its message formatted as fmt.Sprintf does, and in
// JSON each argument keys names as a field.
func (l *Log) Eventf(level LogLevel, keys Keys, f string, args ...interface{}) {
	s := l.settings.Load()
	if s.Level > level {
		return
	}
	if s.Format == Text {
		Logf(l.dest, level, level, f, args...)
		return
	}
	msg := fmt.Sprintf(f, args...)
	b := l.appendHead(l.begin(), level)
	b = appendJSONString(b, msg)
	for i, k := range keys {
		if k != "" && i < len(args) {
			b = appendField(b, k, args[i])
		}
	}
	l.end(b)
}

// Join logs an event whose message is parts joined, without fmt (the
// busiest lines, one per registration); in JSON each part keys names is a
// field, left out when empty.
func (l *Log) Join(level LogLevel, keys Keys, parts ...string) {
	s := l.settings.Load()
	if s.Level > level {
		return
	}
	if s.Format == Text {
		logJoined(l.dest, level, level, parts...)
		return
	}
	b := append(l.appendHead(l.begin(), level), '"')
	for i, p := range parts {
		if len(p) > 0 && p[len(p)-1] >= utf8.RuneSelf && i < len(parts)-1 {
			// a character may span two parts: escape them joined
			b = appendJSONChars(b, strings.Join(parts[i:], ""))
			break
		}
		b = appendJSONChars(b, p)
	}
	b = append(b, '"')
	for i, k := range keys {
		if k != "" && i < len(parts) && parts[i] != "" {
			b = appendJSONString(appendKey(b, k), parts[i])
		}
	}
	l.end(b)
}

// begin returns the buffer a JSON line is appended to: the writer's own,
// locked until end, or a new one.
func (l *Log) begin() []byte {
	if l.batch != nil {
		return l.batch.begin()
	}
	return make([]byte, 0, 256)
}

// end closes the JSON line in b and hands it on.
func (l *Log) end(b []byte) {
	b = append(b, '}', '\n')
	if l.batch != nil {
		l.batch.end(b)
		return
	}
	l.dest.Output(3, string(b[:len(b)-1]))
}

// appendHead appends {"time":"<RFC 3339, UTC, microseconds>","level":"<LEVEL>","msg":
func (l *Log) appendHead(b []byte, level LogLevel) []byte {
	now := l.now().UTC()
	st := l.stamp.Load()
	if sec := now.Unix(); st == nil || st.sec != sec {
		st = &stamp{sec: sec, text: now.AppendFormat([]byte(`{"time":"`), "2006-01-02T15:04:05.")}
		l.stamp.Store(st)
	}
	b = appendDigits(append(b, st.text...), now.Nanosecond()/1000, 6)
	b = append(append(append(b, `Z","level":"`...), level.String()...), `","msg":`...)
	return b
}

// appendKey appends ,"<k>": (keys are the daemon's own words).
func appendKey(b []byte, k string) []byte {
	return append(append(append(b, ',', '"'), k...), '"', ':')
}

// appendField appends the field k of an event's value v: a number for
// integers and durations (in seconds), a string for anything else (errors
// and Stringers as %v formats them); an empty string is left out.
func appendField(b []byte, k string, v interface{}) []byte {
	switch v := v.(type) {
	case string:
		if v == "" {
			return b
		}
		return appendJSONString(appendKey(b, k), v)
	case int:
		return strconv.AppendInt(appendKey(b, k), int64(v), 10)
	case int64:
		return strconv.AppendInt(appendKey(b, k), v, 10)
	case uint64:
		return strconv.AppendUint(appendKey(b, k), v, 10)
	case time.Duration:
		return strconv.AppendFloat(appendKey(b, k), v.Seconds(), 'f', -1, 64)
	}
	if s := fmt.Sprint(v); s != "" {
		return appendJSONString(appendKey(b, k), s)
	}
	return b
}

// jsonSafe[c] reports whether the ASCII byte c stands for itself in a
// JSON string.
var jsonSafe = func() (safe [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		safe[c] = c != '"' && c != '\\'
	}
	return safe
}()

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	return append(appendJSONChars(append(b, '"'), s), '"')
}

// appendJSONChars appends s escaped for a JSON string, as log/slog escapes
// it: quotes, backslashes and control characters escaped, each byte that is
// not valid UTF-8 as \ufffd, and U+2028 and U+2029 escaped (JavaScript
// reads them as line ends).
func appendJSONChars(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			switch r {
			case utf8.RuneError:
				b = append(b, `\ufffd`...)
			default:
				b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			}
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}
