package edge

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// refusal is why a request was refused before it reached an environment.
type refusal uint8

const (
	refusedHostUnknown refusal = iota
	refusedMisdirected
	refusedProxyNotFound
	refusedInvalid
	refusedMethod
	refusedHeadTooLarge
	refusedVersion
	refusedTransferCoding
	refusedExpectation
	refusedH2Protocol
	refusedH2Refused
	refusedH2Flood
	numRefusals
)

// refusalNames are the reason labels of edged_requests_refused_total: the
// fault code where the answer is a fault of its own, else what the
// HTTP/1.1 parser (431, 505, 501, 417) or HTTP/2 (a stream or connection
// error, no answer; a stream refused over h2_max_concurrent_streams, which
// the client is told to retry, apart: no error of the client's; a
// connection ended for a flood, ENHANCE_YOUR_CALM, apart too) refused.
var refusalNames = [numRefusals]string{
	refusedHostUnknown:    faultHostUnknown,
	refusedMisdirected:    faultMisdirected,
	refusedProxyNotFound:  faultNotFound,
	refusedInvalid:        faultInvalid,
	refusedMethod:         faultMethod,
	refusedHeadTooLarge:   "request.header_too_large",
	refusedVersion:        "request.version",
	refusedTransferCoding: "request.transfer_coding",
	refusedExpectation:    "request.expectation",
	refusedH2Protocol:     "h2.protocol",
	refusedH2Refused:      "h2.refused_stream",
	refusedH2Flood:        "h2.flood",
}

// h1Refusal is the reason of a refusal by the HTTP/1.1 parser.
func h1Refusal(status int) refusal {
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		return refusedHeadTooLarge
	case http.StatusHTTPVersionNotSupported:
		return refusedVersion
	case http.StatusNotImplemented:
		return refusedTransferCoding
	case http.StatusExpectationFailed:
		return refusedExpectation
	}
	return refusedInvalid
}

// handshakeOutcome is how a TLS handshake ended.
type handshakeOutcome uint8

const (
	handshakeOK handshakeOutcome = iota
	handshakeUnknownSNI
	handshakeProtocolVersion
	handshakeBadClientCert
	handshakeTimeout
	handshakeOther
	numHandshakeOutcomes
)

var handshakeNames = [numHandshakeOutcomes]string{"ok", "unknown_sni", "protocol_version", "bad_client_certificate", "timeout", "other"}

// vhostCounters are the refusal and handshake counters of one virtual
// host (name "" for requests and handshakes no virtual host was known
// for). A snapshot's groupRuntime holds its virtual host's, so that
// counting looks nothing up; build hands them on to the next snapshot's
// group of the same name, so they survive reloads that rebuild the group,
// and drops them with the virtual host: a removed or renamed virtual
// host's series leave /metrics rather than being exported until the
// process restarts, one more set with every rename.
type vhostCounters struct {
	name       string
	refused    [numRefusals]atomic.Uint64
	handshakes [numHandshakeOutcomes]atomic.Uint64
}

// noVhost counts what no virtual host was known for.
var noVhost = &vhostCounters{}

// writeRefusalMetrics writes edged_requests_refused_total and
// edged_tls_handshakes_total of noVhost and of the virtual hosts of snap
// (nil: noVhost's alone), every reason and outcome (zeros included, so
// that rate() has a start).
func writeRefusalMetrics(w io.Writer, snap *Snapshot) {
	all := []*vhostCounters{noVhost}
	if snap != nil {
		for _, g := range snap.groups {
			all = append(all, g.counters)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].name < all[j].name })
	var b []byte
	for _, vc := range all {
		vh := promQuote(vc.name)
		for i := range vc.refused {
			b = append(b, `edged_requests_refused_total{reason="`...)
			b = append(b, refusalNames[i]...)
			b = append(b, `",virtual_host=`...)
			b = append(b, vh...)
			b = append(b, "} "...)
			b = strconv.AppendUint(b, vc.refused[i].Load(), 10)
			b = append(b, '\n')
		}
		for i := range vc.handshakes {
			b = append(b, `edged_tls_handshakes_total{outcome="`...)
			b = append(b, handshakeNames[i]...)
			b = append(b, `",virtual_host=`...)
			b = append(b, vh...)
			b = append(b, "} "...)
			b = strconv.AppendUint(b, vc.handshakes[i].Load(), 10)
			b = append(b, '\n')
		}
	}
	_, _ = w.Write(b)
}

// Refused requests and failed handshakes are logged at info, each reason
// and outcome within its own budget (lineBudget): refusedLinesBurst at
// once, then refusedLinesPerSec a second; a logged line says how many of
// its kind were left out since the previous one.
const (
	refusedLinesPerSec = 10
	refusedLinesBurst  = 10
)

// refusalLog counts and logs refusals and handshakes. The counting needs
// no refusalLog (a nil one counts and logs nothing else), so the HTTP/1.1
// server's own tests need none.
type refusalLog struct {
	log        *slog.Logger
	requests   [numRefusals]lineBudget
	handshakes [numHandshakeOutcomes]lineBudget
}

func newRefusalLog(log *slog.Logger) *refusalLog {
	l := &refusalLog{log: log}
	for i := range l.requests {
		l.requests[i].perSec, l.requests[i].burst = refusedLinesPerSec, refusedLinesBurst
	}
	for i := range l.handshakes {
		l.handshakes[i].perSec, l.handshakes[i].burst = refusedLinesPerSec, refusedLinesBurst
	}
	return l
}

// maxLoggedValue bounds what a log line repeats of a refused request's
// Host, target or message: the client chose them.
const maxLoggedValue = 256

func clip(s string) string {
	if len(s) > maxLoggedValue {
		return s[:maxLoggedValue] + "..."
	}
	return s
}

// request counts a refused request in vc (nil: no virtual host) and logs
// it within its reason's budget.
func (l *refusalLog) request(vc *vhostCounters, why refusal, status int, remote, host, msg string) {
	if vc == nil {
		vc = noVhost
	}
	vc.refused[why].Add(1)
	if l == nil {
		return
	}
	ok, skipped := l.requests[why].take()
	if !ok {
		return
	}
	l.log.Info("request refused", "reason", refusalNames[why], "status", status, "virtual_host", vc.name,
		"remote", remote, "host", clip(host), "message", clip(msg), "suppressed", skipped)
}

// handshake counts a handshake's outcome and logs a failure within its
// outcome's budget.
func (l *refusalLog) handshake(hc *helloConn, err error) {
	out := classifyHandshake(hc, err)
	vc := hc.vhost
	if vc == nil {
		vc = noVhost
	}
	vc.handshakes[out].Add(1)
	if out == handshakeOK || l == nil {
		return
	}
	ok, skipped := l.handshakes[out].take()
	if !ok {
		return
	}
	l.log.Info("TLS handshake failed", "outcome", handshakeNames[out], "virtual_host", vc.name,
		"server_name", clip(hc.serverName), "remote", hc.RemoteAddr().String(), "error", clip(err.Error()), "suppressed", skipped)
}

// helloConn is the TCP connection a TLS server reads from, carrying what
// Server.tlsForClient learnt from the ClientHello: how the handshake ended
// is told from it, since crypto/tls returns most failures as bare strings.
type helloConn struct {
	net.Conn
	hello      bool            // a ClientHello was read
	serverName string          // its SNI
	unknown    bool            // no virtual host serves it (and there is no default_virtual_host)
	vhost      *vhostCounters  // the virtual host it chose; nil when none
	noVersion  bool            // it offers no TLS version the virtual host serves
	clientCert bool            // the virtual host requires a client certificate
	turn       *handshakeTurns // the handshake turn it holds, given back at its first write
	deadline   time.Time       // the handshake's (read_header_timeout), for its wait for a turn
	// turns and line are where turn came from and the line it waited
	// in: the second ClientHello after a HelloRetryRequest waits there
	// again. phase and records follow the client's handshake records
	// until then (hsturns.go).
	turns   *handshakeTurns
	line    string
	phase   helloPhase
	records helloRecords
}

// Write ends the handshake's turn, if it holds one, before its first
// write: the server's first flight, whose key exchange and signature were
// the turn's work (or an alert). When that write is a HelloRetryRequest,
// the work comes after the client's second ClientHello, which takes a
// turn again (retakeTurn), here when it came with the first; the
// ChangeCipherSpec record the server sends after the request is no
// flight of that turn's.
func (c *helloConn) Write(p []byte) (int, error) {
	if c.unknown && isInternalErrorAlert(p) {
		// crypto/tls answers every error of GetConfigForClient with
		// internal_error; a name no virtual host serves is the
		// client's mistake, which RFC 6066 (3) answers so.
		a := [7]byte(p)
		a[6] = alertUnrecognizedName
		return c.Conn.Write(a[:])
	}
	if c.turn != nil && !isChangeCipherSpec(p) {
		if c.phase == helloFirst && isHelloRetryRequest(p) {
			c.phase = helloRetried
		} else {
			c.phase = helloOver
		}
		c.endTurn()
	}
	n, err := c.Conn.Write(p)
	if err == nil && c.phase == helloRetried {
		err = c.retakeTurn()
	}
	return n, err
}

// Read follows the client's handshake records until the server's first
// flight, and after a HelloRetryRequest takes a turn once the second
// ClientHello has been read whole.
func (c *helloConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.phase != helloOver && n > 0 {
		c.records.feed(p[:n])
		if c.phase == helloRetried {
			if terr := c.retakeTurn(); terr != nil {
				return n, terr
			}
		}
	}
	return n, err
}

// handshakeOver gives back the turn the handshake holds, if any, and
// stops following its records: the connection's reads and writes are
// its requests' from now on.
func (c *helloConn) handshakeOver() {
	c.phase = helloOver
	c.endTurn()
}

// endTurn gives back the handshake turn the connection holds, if any.
func (c *helloConn) endTurn() {
	if t := c.turn; t != nil {
		c.turn = nil
		t.give()
	}
}

// errUnknownSNI refuses a handshake whose server name no virtual host
// serves (and no default_virtual_host is set): helloConn.Write sends the
// client the alert unrecognized_name for it.
var errUnknownSNI = errors.New("no virtual host for the server name")

// Alert descriptions (RFC 8446 6).
const (
	alertInternalError    = 80
	alertUnrecognizedName = 112
)

// isInternalErrorAlert reports whether a write is a fatal internal_error
// alert in a plaintext record, as crypto/tls sends it before a handshake
// has keys: record header, level, description.
func isInternalErrorAlert(p []byte) bool {
	return len(p) == 7 && p[0] == recordTypeAlert && p[3] == 0 && p[4] == 2 && p[5] == 2 && p[6] == alertInternalError
}

// noHandshake reports a connection closed or timed out before it sent a
// ClientHello: a load balancer's TCP check or a port scan, not a failed
// handshake; it is neither counted nor logged.
func noHandshake(hc *helloConn, err error) bool {
	if hc.hello || err == nil {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isTimeout(err)
}

// classifyHandshake tells a handshake's outcome from its error and what
// the ClientHello said.
func classifyHandshake(hc *helloConn, err error) handshakeOutcome {
	var cve *tls.CertificateVerificationError
	switch {
	case err == nil:
		return handshakeOK
	case errors.Is(err, errUnknownSNI):
		return handshakeUnknownSNI
	case hc.noVersion:
		return handshakeProtocolVersion
	case errors.As(err, &cve):
		return handshakeBadClientCert
	case hc.clientCert && hc.vhost != nil && !isRemoteAlert(err) && strings.Contains(err.Error(), "certificate"):
		// No certificate, or one whose signature does not verify:
		// crypto/tls says so in a string only. (A client's own alert,
		// "remote error: tls: bad certificate", is about ours.)
		return handshakeBadClientCert
	case isTimeout(err):
		// read_header_timeout passed after the ClientHello: a client that
		// stalled mid-handshake, or a wait for a handshake turn (a flood
		// of handshakes) that outlasted it.
		return handshakeTimeout
	}
	return handshakeOther
}

// isTimeout reports an error of a deadline that passed
// (os.ErrDeadlineExceeded is a net.Error whose Timeout is true).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isRemoteAlert reports an error that is the peer's TLS alert.
func isRemoteAlert(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}

// noteHello records in hc (when the handshake runs over one) what the
// ClientHello chose: g nil when no virtual host serves its name.
func noteHello(hello *tls.ClientHelloInfo, g *groupRuntime) {
	hc, ok := hello.Conn.(*helloConn)
	if !ok {
		return
	}
	hc.hello, hc.serverName = true, hello.ServerName
	if g == nil || g.tls == nil {
		hc.unknown = true
		return
	}
	hc.vhost, hc.clientCert = g.counters, g.clientCerts
	hc.noVersion = true
	for _, v := range hello.SupportedVersions {
		if v >= g.tls.MinVersion && v <= g.tls.MaxVersion {
			hc.noVersion = false
			break
		}
	}
}
