//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package upstream

import "net"

// canWriteWait: no raw writes here; requests go through nc.Write.
const canWriteWait = false

func (c *conn) writeWait(p []byte) (int, error) { return c.nc.Write(p) }

func (w *waitWriter) step(fd uintptr) bool { return true }

func writeFunc(net.Conn) func(fd int, p []byte) (int, error) { return nil }
