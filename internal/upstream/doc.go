// Package upstream is a pool of backend nodes for one [[upstream]] of one
// environment, with edged's own small HTTP/1.1 client.
//
// An Upstream picks a healthy node for a request (smooth weighted round
// robin, least requests in flight, or rendezvous hashing on a header, a
// cookie or the client address), keeps the node's health up to date
// (active probes, passive ejection after consecutive failures) and owns
// every connection to its nodes.
//
// Node.RoundTrip is the upstream leg of the hot path. The request's own
// goroutine checks a connection out of the node's idle stack (or dials
// one), writes the request head and small bodies in one write through a
// pooled bufio.Writer, parses the response head in place from the
// connection's bufio.Reader into the connection's own response and header
// map (response.go), and hands the body to the caller. When the caller
// closes a body it read to EOF the connection returns to the idle stack;
// an earlier Close discards it. A reaper closes, in the
// background, idle connections older than IdleTimeout and those the
// server closed, so that the bottom of the stack does not keep them
// after a burst.
//
// What this package must never do:
//   - start a goroutine per connection or per request: the only goroutines
//     it owns are one reaper of idle connections and the active health
//     checkers, started by Start and stopped and waited for by Close
//     (context.AfterFunc, or the caller's AbortRegistry, runs a short
//     callback only when a request's context is canceled);
//   - retry a request whose body it has started to consume unless the
//     body rewinds (Rewinder), or one that may have reached the backend
//     unless the caller marked it Replayable (the caller, edge, owns the
//     retry policy and keeps the bodies it may resend);
//   - rewrite, sort or clone the headers it is given: the caller (edge)
//     owns header policy, this package only refuses header values that
//     would split the request (CR, LF, NUL);
//   - cut a response body that keeps coming: ResponseTimeout bounds the
//     wait for the head and each wait for more of the body (an idle
//     limit, ErrBodyTimeout), never the body as a whole;
//   - share anything with another environment's Upstream: every Upstream
//     has its own nodes, idle connections, health state and counters.
//     The one thing the process's Upstreams share is the room for health
//     probes: at most MaxProbesInFlight are open at once, all together,
//     each a connection, and an environment's at most a quarter of them.
package upstream
