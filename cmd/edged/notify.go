package main

import (
	"strconv"

	"edged/edge"
	"edged/internal/sdnotify"
)

// notifyReloaded tells systemd a reload attempt is over: READY=1 either
// way (the service still serves), and a STATUS= line with the generation
// that serves or why the attempt failed.
func notifyReloaded(rec edge.ReloadRecord) {
	if rec.OK {
		_ = sdnotify.Ready(statusLine(rec))
		return
	}
	_ = sdnotify.Ready("")
	_ = sdnotify.Status(statusLine(rec))
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
