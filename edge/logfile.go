package edge

import (
	"bufio"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// lineLog is a file of JSON lines owned by an environment: its access log
// or its audit log. The request's goroutine only formats the line and
// hands it over; a writer goroutine owned by the log does the I/O, so a
// slow disk never holds a worker. When the hand-over queue is full the line
// is dropped and counted (edged_access_log_dropped_total) rather than
// slowing traffic down.
type lineLog struct {
	path   string // "" = stdout
	lines  chan []byte
	reopen chan chan error
	quit   chan struct{}
	done   chan struct{}
	stop   sync.Once
	log    *slog.Logger

	// gone budgets the lines of requests whose client went away (499):
	// an HTTP/2 client can open and reset streams by the thousand for a
	// few bytes each, and must not make edged write a line per stream.
	gone lineBudget
}

// Lines of 499 requests each log may write: goneLinesPerSec a second on
// average, goneLinesBurst at once. Past that they are counted, not written.
const (
	goneLinesPerSec = 50
	goneLinesBurst  = 100
)

// lineBudget is a token bucket. Only requests whose client went away take
// its lock, so the common path pays nothing.
type lineBudget struct {
	mu         sync.Mutex
	tokens     float64
	last       time.Time
	started    bool
	suppressed *metrics.Counter // edged_log_lines_suppressed_total; nil in tests that build a lineLog alone
}

// allow takes a token, or counts the line as suppressed.
func (b *lineBudget) allow() bool {
	now := time.Now()
	b.mu.Lock()
	if !b.started {
		b.started, b.tokens = true, goneLinesBurst
	} else {
		b.tokens = min(goneLinesBurst, b.tokens+now.Sub(b.last).Seconds()*goneLinesPerSec)
	}
	b.last = now
	ok := b.tokens >= 1
	if ok {
		b.tokens--
	}
	b.mu.Unlock()
	if !ok && b.suppressed != nil {
		b.suppressed.Inc()
	}
	return ok
}

// allowGone reports whether the line of a request whose client went away
// may be written (see lineBudget).
func (a *lineLog) allowGone() bool { return a.gone.allow() }

const lineLogQueue = 4096

func openLineLog(path string, log *slog.Logger) (*lineLog, error) {
	f, err := openLogFile(path)
	if err != nil {
		return nil, err
	}
	a := &lineLog{
		path:   path,
		lines:  make(chan []byte, lineLogQueue),
		reopen: make(chan chan error),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		log:    log,
	}
	go a.run(f)
	return a, nil
}

func openLogFile(path string) (*os.File, error) {
	if path == "" {
		return os.Stdout, nil
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
}

// run owns the file: it writes lines as they come, flushes when the queue
// runs dry, and reopens the file on request (logrotate's SIGUSR1).
func (a *lineLog) run(f *os.File) {
	w := bufio.NewWriterSize(f, 64<<10)
	closeFile := func() {
		_ = w.Flush()
		if f != os.Stdout {
			_ = f.Close()
		}
	}
	defer close(a.done)
	for {
		select {
		case <-a.quit:
			for len(a.lines) > 0 {
				_, _ = w.Write(<-a.lines)
			}
			closeFile()
			return
		case line := <-a.lines:
			_, _ = w.Write(line)
			if len(a.lines) == 0 {
				if err := w.Flush(); err != nil {
					a.log.Warn("log write failed", "path", a.path, "error", err.Error())
				}
			}
		case reply := <-a.reopen:
			nf, err := openLogFile(a.path)
			if err == nil {
				closeFile()
				f = nf
				w.Reset(f)
			}
			reply <- err
		}
	}
}

// reopenFile closes and opens the log file again, after logrotate moved it.
func (a *lineLog) reopenFile() error {
	reply := make(chan error, 1)
	select {
	case a.reopen <- reply:
		return <-reply
	case <-a.done:
		return nil
	}
}

// close flushes what is queued and closes the file. Lines logged after it
// are dropped, never a panic: a request may outlive its environment's drain.
func (a *lineLog) close() {
	a.stop.Do(func() { close(a.quit) })
	<-a.done
}

// add queues one line, or drops and counts it when the writer is behind.
func (a *lineLog) add(line []byte) {
	select {
	case a.lines <- line:
	default:
		accessLogDropped.Inc()
	}
}

// appendRequestLine starts a log line with what both logs say of a
// request: time, event, environment, proxy, request id, client.
func (x *exchange) appendRequestLine(b []byte, event string) []byte {
	b = append(b, `{"time":"`...)
	b = x.start.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","event":"`...)
	b = append(b, event...)
	b = append(b, `","env":`...)
	b = appendJSONString(b, x.px.env.Name)
	b = append(b, `,"proxy":`...)
	b = appendJSONString(b, x.px.name)
	b = append(b, `,"request_id":`...)
	b = appendJSONString(b, x.rid)
	b = append(b, `,"client":`...)
	return appendJSONString(b, x.r.RemoteAddr)
}

// appendRequestOutcome adds method, host, URI and status.
func (x *exchange) appendRequestOutcome(b []byte) []byte {
	r := x.r
	b = append(b, `,"method":`...)
	b = appendJSONString(b, r.Method)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, r.Host)
	b = append(b, `,"uri":`...)
	b = appendJSONString(b, r.RequestURI)
	b = append(b, `,"status":`...)
	return strconv.AppendInt(b, int64(x.status), 10)
}

// accessLine formats the access log line of a finished request.
func (x *exchange) accessLine(d time.Duration) []byte {
	b := x.appendRequestLine(make([]byte, 0, 384), "access")
	b = x.appendRequestOutcome(b)
	b = append(b, `,"proto":`...)
	b = appendJSONString(b, x.r.Proto)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, x.bytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, x.bytesOut, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', 3, 64)
	if x.node != "" {
		b = append(b, `,"upstream_node":`...)
		b = appendJSONString(b, x.node)
	}
	if x.faultCode != "" {
		b = append(b, `,"fault":`...)
		b = appendJSONString(b, x.faultCode)
	}
	return append(b, "}\n"...)
}

// auditLine formats the audit record of a request: who (client address,
// verified client certificate), what (method, host, URI) and the outcome.
func (x *exchange) auditLine() []byte {
	b := x.appendRequestLine(make([]byte, 0, 320), "request")
	if st := x.r.TLS; st != nil && len(st.VerifiedChains) > 0 && len(st.VerifiedChains[0]) > 0 {
		b = append(b, `,"client_cert":`...)
		b = appendJSONString(b, st.VerifiedChains[0][0].Subject.String())
	}
	b = x.appendRequestOutcome(b)
	return append(b, "}\n"...)
}
