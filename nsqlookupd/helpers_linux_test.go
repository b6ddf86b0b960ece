package nsqlookupd

import (
	"net"
	"syscall"
	"unsafe"
)

// socketQueue returns how many bytes conn's socket holds in its receive
// queue (unread by the application) with inq, or in its send queue (not
// yet acknowledged by the peer) without.
func socketQueue(conn net.Conn, inq bool) int {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	req := uintptr(syscall.TIOCOUTQ)
	if inq {
		req = syscall.TIOCINQ
	}
	var n int32
	rc.Control(func(fd uintptr) {
		syscall.Syscall(syscall.SYS_IOCTL, fd, req, uintptr(unsafe.Pointer(&n)))
	})
	return int(n)
}
