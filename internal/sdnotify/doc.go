// Package sdnotify tells systemd about the service's state through the
// sd_notify datagram protocol (Type=notify units): READY=1 once edged
// serves, RELOADING=1 and READY=1 around a reload, STATUS= lines with the
// generation or the error, STOPPING=1 on shutdown with the time the stop
// may take.
//
// It speaks the protocol directly (one unixgram datagram per call to
// $NOTIFY_SOCKET, path or abstract "@name" socket) instead of linking
// libsystemd or a wrapper module.
//
// It must never fail or block the service because systemd is absent: with
// NOTIFY_SOCKET unset every call is a no-op that returns nil, and a send
// that fails returns an error for the caller to log, nothing more. It must
// never decide anything about the service's state itself.
package sdnotify
