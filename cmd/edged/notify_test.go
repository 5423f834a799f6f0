package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestAbstractNotifySocketAndWatcherReload plays systemd on an abstract
// socket: READY=1 once serving (a request right after it is answered), a
// reload the watcher makes of a refused file framed by RELOADING=1 with
// MONOTONIC_USEC and READY=1, with its STATUS=; edged reload's exit 1;
// STOPPING=1 on SIGTERM.
func TestAbstractNotifySocketAndWatcherReload(t *testing.T) {
	name := fmt.Sprintf("@edged-test-notify-%d-%d", os.Getpid(), time.Now().UnixNano())
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	require.NoError(t, err)
	defer ln.Close()
	msgs := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := ln.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	next := func() string {
		t.Helper()
		select {
		case m := <-msgs:
			return m
		case <-time.After(10 * time.Second):
			t.Fatal("no notification")
			return ""
		}
	}
	ex := newExample(t)
	ex.fastReloads(t)
	ex.setServer(t, "shutdown_delay", `"0s"`)
	p := startServe(t, ex.confDir, "NOTIFY_SOCKET="+name)
	require.True(t, strings.HasPrefix(next(), "READY=1\nSTATUS=serving generation "))
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	code, body := getBody(t, c, "https://test.acme.com/users/1")
	require.Equal(t, 200, code, body)

	before := monotonicNow(t)
	broken := ex.home("test", "orders.toml")
	require.NoError(t, os.WriteFile(broken, []byte(ordersSyntaxError), 0o644))
	m := next()
	require.True(t, strings.HasPrefix(m, "RELOADING=1\nMONOTONIC_USEC="), "%q", m)
	var usec uint64
	_, err = fmt.Sscanf(strings.TrimPrefix(m, "RELOADING=1\nMONOTONIC_USEC="), "%d", &usec)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, usec, before)
	assert.Equal(t, "READY=1", next())
	assert.True(t, strings.HasPrefix(next(), "STATUS=reload failed; still serving generation "))

	code2, _, errOut := runEdged(t, "reload", "-c", ex.confDir)
	assert.Equal(t, 1, code2, errOut)
	assert.True(t, strings.HasPrefix(next(), "RELOADING=1\n"))
	assert.Equal(t, "READY=1", next())
	assert.True(t, strings.HasPrefix(next(), "STATUS=reload failed"))

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.True(t, strings.HasPrefix(next(), "STOPPING=1\nEXTEND_TIMEOUT_USEC="))
}

func monotonicNow(t *testing.T) uint64 {
	var ts unix.Timespec
	require.NoError(t, unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts))
	return uint64(ts.Sec)*1_000_000 + uint64(ts.Nsec)/1_000
}
