package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	sseInterval = 200 * time.Millisecond
	sseMax      = 1000
	delayMax    = time.Minute
)

// echo is what every answer says about the request that arrived.
type echo struct {
	Backend         string `json:"backend"`
	Method          string `json:"method"`
	Path            string `json:"path"`
	Query           string `json:"query"`
	Host            string `json:"host"`
	XForwardedFor   string `json:"x_forwarded_for"`
	XForwardedProto string `json:"x_forwarded_proto"`
	XForwardedHost  string `json:"x_forwarded_host"`
	Forwarded       string `json:"forwarded"`
	XRequestID      string `json:"x_request_id"`
	RemoteAddr      string `json:"remote_addr"`
	BodyBytes       int64  `json:"body_bytes"`
	// ClientCert: RFC 9440's field, which edged sends for a virtual host
	// with forward_client_cert (the example's prod-group, commented out).
	ClientCert string `json:"client_cert,omitempty"`
}

func newEcho(name string, r *http.Request) echo {
	return echo{
		Backend:         name,
		Method:          r.Method,
		Path:            r.URL.Path,
		Query:           r.URL.RawQuery,
		Host:            r.Host,
		XForwardedFor:   r.Header.Get("X-Forwarded-For"),
		XForwardedProto: r.Header.Get("X-Forwarded-Proto"),
		XForwardedHost:  r.Header.Get("X-Forwarded-Host"),
		Forwarded:       r.Header.Get("Forwarded"),
		XRequestID:      r.Header.Get("X-Request-Id"),
		RemoteAddr:      r.RemoteAddr,
		ClientCert:      r.Header.Get("Client-Cert"),
	}
}

func newHandler(name string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) { serveSSE(w, r, name) })
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) { serveWebSocket(w, r) })
	mux.HandleFunc("/delay", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil || d < 0 || d > delayMax {
			http.Error(w, "d: a duration up to 1m, like d=2s", http.StatusBadRequest)
			return
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
		writeEcho(w, r, name, http.StatusOK)
	})
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.PathValue("code"))
		if err != nil || code < 200 || code > 599 {
			http.Error(w, "status: 200..599", http.StatusBadRequest)
			return
		}
		writeEcho(w, r, name, code)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { writeEcho(w, r, name, http.StatusOK) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		mux.ServeHTTP(w, r)
	})
}

func writeEcho(w http.ResponseWriter, r *http.Request, name string, status int) {
	e := newEcho(name, r)
	// Read the body so streaming uploads through edged can be checked by size.
	e.BodyBytes, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(e)
}

// serveSSE sends n events, one per sseInterval, flushing each so a proxy
// that buffers shows up as events arriving all at once.
func serveSSE(w http.ResponseWriter, r *http.Request, name string) {
	n := 3
	if s := r.URL.Query().Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > sseMax {
			http.Error(w, fmt.Sprintf("n: 1..%d", sseMax), http.StatusBadRequest)
			return
		}
		n = v
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	e := newEcho(name, r)
	tick := time.NewTicker(sseInterval)
	defer tick.Stop()
	for i := 1; i <= n; i++ {
		if i > 1 {
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			}
		}
		// The server's WriteTimeout counts from the request; a long stream
		// moves it along with every event.
		rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		data, _ := json.Marshal(struct {
			Seq int `json:"seq"`
			echo
		}{i, e})
		if _, err := fmt.Fprintf(w, "id: %d\nevent: tick\ndata: %s\n\n", i, data); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// headerHasToken reports whether a comma-separated header holds token.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
