// Package deadline moves a connection's read or write deadline lazily.
// Every SetReadDeadline or SetWriteDeadline is timer work in the Go
// runtime; a busy keep-alive connection would move its deadlines on
// every request by a few microseconds each time. A Lazy deadline is set
// a little later than asked (Slack) and then left alone while the
// deadlines asked for fall within it: a timeout may end up to Slack(d)
// late, never early.
package deadline

import "time"

// Lazy is the deadline last set through it; the zero value knows none.
type Lazy struct {
	at int64 // unix ns; 0: unknown (set some other way, or never)
}

// After returns the deadline to set for d after now and true, or false
// when the one set is no earlier and at most Slack(d) later. The
// deadline it returns is Slack(d) later than asked.
func (l *Lazy) After(now time.Time, d time.Duration) (time.Time, bool) {
	t := now.UnixNano() + int64(d)
	slack := int64(Slack(d))
	if l.at >= t && l.at-t <= slack {
		return time.Time{}, false
	}
	l.at = t + slack
	return time.Unix(0, l.at), true
}

// Forget records that the deadline was set without l (cleared, put in
// the past, or set exactly): the next After sets one.
func (l *Lazy) Forget() { l.at = 0 }

// Slack is how much later than asked a timeout of d may end: 1/16 of
// it, at most a second.
func Slack(d time.Duration) time.Duration { return min(d/16, time.Second) }
