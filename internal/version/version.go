// Package version holds the release this daemon reports and the version line
// printed by --version and logged at start-up.
package version

import (
	"fmt"
	"runtime"
)

// Binary is the NSQ release this nsqlookupd is a drop-in replacement for. It is
// what IDENTIFY answers and /info report, so peers see the version they expect.
const Binary = "1.3.0"

// String returns the version line of app, e.g.
// "nsqlookupd v1.3.0 (built w/go1.26.8)".
func String(app string) string {
	return fmt.Sprintf("%s v%s (built w/%s)", app, Binary, runtime.Version())
}
