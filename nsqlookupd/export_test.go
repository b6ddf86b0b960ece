package nsqlookupd

import "io"

// Seams for tests only: none of this is in the daemon.

// panicVerb is a V1 command only the tests have: it panics, as no input can
// make a real command do, so that they can check the recovery at the
// connection boundary.
const panicVerb = "PANIC_FOR_TEST"

func init() {
	commandTable = append(commandTable, command{panicVerb,
		func(*lookupProtocolV1, *clientV1, io.Reader, []string) ([]byte, error) {
			panic("injected by a test")
		}})
}
