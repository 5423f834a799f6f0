package main

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"edged/edge"
	"edged/internal/sdnotify"
)

// notifyReloading tells systemd a reload starts (RELOADING=1).
func notifyReloading(log *slog.Logger) {
	logNotifyFailure(log, "RELOADING=1", sdnotify.Reloading())
}

// notifyReloaded tells systemd a reload attempt is over: READY=1 either
// way (the service still serves), and a STATUS= line with the generation
// that serves or why the attempt failed.
func notifyReloaded(log *slog.Logger, rec edge.ReloadRecord) {
	if rec.OK {
		logNotifyFailure(log, "READY=1", sdnotify.Ready(statusLine(rec)))
		return
	}
	logNotifyFailure(log, "READY=1", sdnotify.Ready(""))
	logNotifyFailure(log, "STATUS=", tellStatus(statusLine(rec)))
}

// notifyStarted tells systemd the start is over (READY=1), with the
// generation that serves as its status or, when the last reload was
// refused (a file changed during the start, whose reload came before
// this), why: that STATUS= was sent already, and "serving generation N"
// must not take its place while the refused files are on disk. Under
// reloadMu, so that a reload the control socket runs meanwhile has its
// notifications before or after these, not among them.
func (d *daemon) notifyStarted() error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	if rec := d.lastReload; rec != nil && !rec.OK {
		return sdnotify.Ready(visible(statusLine(*rec)))
	}
	return sdnotify.Ready(fmt.Sprintf("serving generation %d", d.srv.Snapshot().Generation))
}

// ping tells systemd edged's signal loop is alive (WATCHDOG=1).
func (d *daemon) ping() { logNotifyFailure(d.log, "WATCHDOG=1", sdnotify.Watchdog()) }

// tellStatus sends systemd a STATUS= line with its control characters
// shown as escapes (visible): systemd keeps the text as it comes, and
// `systemctl status` prints it to a terminal, while the errors it quotes
// name files, whose names are anyone's who may write to a home.
func tellStatus(s string) error { return sdnotify.Status(visible(s)) }

// logNotifyFailure logs a notification that could not be sent, as
// internal/sdnotify leaves to its caller: after RELOADING=1, systemd
// waits for the READY=1 that ends the reload, and would otherwise never
// hear why it did not come.
func logNotifyFailure(log *slog.Logger, state string, err error) {
	if err != nil {
		log.Error("cannot tell systemd "+state, "state", state, "notify_socket", os.Getenv("NOTIFY_SOCKET"), "error", err.Error())
	}
}

func statusLine(rec edge.ReloadRecord) string {
	if rec.OK {
		// The same line whether or not the reload changed anything:
		// either way that generation serves.
		return "serving generation " + strconv.FormatUint(rec.Generation, 10)
	}
	msg := "reload failed; still serving generation " + strconv.FormatUint(rec.Generation, 10)
	if len(rec.Errors) > 0 {
		msg += ": " + rec.Errors[0].Error()
	}
	return msg
}
