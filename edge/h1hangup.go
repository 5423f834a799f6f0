package edge

import (
	"errors"
	"syscall"
	"time"
)

// hangupWatch looks for the client going away while a request whose body
// is still unread waits in its environment's pool (queued or held). The
// background read cannot watch such a request: what it would read is the
// body, which the request needs. So a goroutine waits in the poller for
// the socket to become readable and asks the kernel each time whether the
// client shut its side (peerHungUp). Without it, a client that gave up
// while its upload was queued would have the request sent to the node
// anyway once a worker came free (HAProxy's abortonclose).
type hangupWatch struct {
	rc   syscall.RawConn // raw's, made at the connection's first watch
	done chan struct{}   // closed when the watch ends; nil: no watch
	gone bool            // the client hung up; written before done closes
	rdl  time.Time       // the request's read_timeout deadline: the body's, set again when the watch stops
}

// errClientHungUp is what the body's reads meet after a watch saw the
// client go.
var errClientHungUp = errors.New("the client closed the connection while its request waited")

// watchHangup starts the hangup watch of a request about to wait with its
// body unread (watchNow).
func (c *h1Conn) watchHangup() {
	if !canWatchHangup || c.hup.done != nil || c.rerr != nil || c.body.done || c.body.err != nil {
		return
	}
	rc := c.rawConn()
	if rc == nil {
		return
	}
	done := make(chan struct{})
	c.hup.done, c.hup.gone = done, false
	go func() {
		// Read calls peerHungUp at once, then each time the poller finds
		// the socket readable; it returns an error when stopHangupWatch
		// puts the read deadline in the past, or the connection closes.
		if rc.Read(peerHungUp) == nil {
			c.hup.gone = true
			c.cancel()
		}
		close(done)
	}()
}

// stopHangupWatch ends the watch, if one runs, before anything reads the
// connection: the body's first read and the handler's return. It sets
// the body's read deadline again, or, if the client hung up, marks the
// connection to close.
func (c *h1Conn) stopHangupWatch() {
	done := c.hup.done
	if done == nil {
		return
	}
	_ = c.raw.SetReadDeadline(aLongTimeAgo)
	<-done
	c.hup.done = nil
	if c.hup.gone {
		c.rerr = errClientHungUp
		c.closeAfter = true
	}
	_ = c.nc.SetReadDeadline(c.hup.rdl)
	c.rdl.Forget()
}

// rawConn is the connection's socket as the poller waits on it, made at
// its first use; nil when it has none.
func (c *h1Conn) rawConn() syscall.RawConn {
	if c.hup.rc == nil {
		sc, ok := c.raw.(syscall.Conn)
		if !ok {
			return nil
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			return nil
		}
		c.hup.rc = rc
	}
	return c.hup.rc
}

// awaitHangup waits, reading nothing, until the client hangs up (true)
// or the connection's read deadline passes (false): the wait of a hold
// whose read buffer is full of pipelined requests (h1Conn.hold), which
// the hold's end, or the shutdown's cut (cutRead), ends as it ends a
// read. Where the kernel cannot be asked (not Linux), it waits until end.
func (c *h1Conn) awaitHangup(end time.Time) bool {
	rc := c.rawConn()
	if !canWatchHangup || rc == nil {
		time.Sleep(time.Until(end))
		return false
	}
	// Read calls peerHungUp at once, then each time the poller finds the
	// socket readable (what the client sends after the buffer filled, or
	// its FIN); it returns the deadline's error when that passes.
	return rc.Read(peerHungUp) == nil
}
