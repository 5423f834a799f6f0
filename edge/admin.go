package edge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"edged/internal/config"
)

// adminHandler serves the admin listener: /metrics, /healthz, /readyz and
// /status. It only reads; control actions go through the local control
// socket, never through here.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", s.serveMetrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if s.draining.Load() || s.snap.Load() == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready")
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.Status())
	})
	return mux
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	var buf bytes.Buffer
	s.writeSeries(&buf)
	writeExposition(w, buf.Bytes())
}

// writeSeries writes the series of /metrics, in no order of families;
// writeExposition groups them and adds their HELP and TYPE.
func (s *Server) writeSeries(w io.Writer) {
	metrics.WritePrometheus(w, true)
	if snap := s.snap.Load(); snap != nil {
		names := make([]string, 0, len(snap.groups))
		for name := range snap.groups {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if g := snap.groups[name]; !g.notAfter.IsZero() {
				writeGauge(w, fmt.Sprintf(`edged_certificate_not_after_seconds{virtual_host=%q}`, name), float64(g.notAfter.Unix()))
			}
		}
	}
}

// Status is what /status shows.
type Status struct {
	Generation uint64        `json:"generation"`
	Applied    time.Time     `json:"applied"`
	Draining   bool          `json:"draining"`
	LastReload *ReloadRecord `json:"last_reload,omitempty"`
	// FileErrors lists, per file, what the last reload attempt refused in
	// it; empty once a reload succeeds.
	FileErrors   map[string][]string  `json:"file_errors,omitempty"`
	Environments map[string]EnvStatus `json:"environments"`
	// DrainingEnvironments are those a reload replaced or removed that
	// still finish their requests in flight, by name, oldest first.
	DrainingEnvironments []DrainingEnv        `json:"draining_environments,omitempty"`
	Certificates         map[string]time.Time `json:"certificates"`
}

// DrainingEnv is a replaced environment on /status.
type DrainingEnv struct {
	Name     string    `json:"name"`
	Hash     string    `json:"hash"`
	Since    time.Time `json:"since"`
	InFlight int64     `json:"in_flight"`
}

// Status reports the serving generation, the last reload attempt with its
// errors per file and line, every environment's pool, upstream health and
// home (owner and group as they are now, not as they were at the reload),
// and certificate expiry per virtual host.
func (s *Server) Status() Status {
	st := Status{Draining: s.draining.Load(), Environments: map[string]EnvStatus{}, Certificates: map[string]time.Time{}}
	s.statusMu.Lock()
	st.LastReload = s.lastResult
	for e, since := range s.retiring {
		st.DrainingEnvironments = append(st.DrainingEnvironments, DrainingEnv{Name: e.Name, Hash: e.Hash, Since: since, InFlight: e.inflight.Load()})
	}
	s.statusMu.Unlock()
	sort.Slice(st.DrainingEnvironments, func(i, j int) bool {
		a, b := st.DrainingEnvironments[i], st.DrainingEnvironments[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Since.Before(b.Since)
	})
	if lr := st.LastReload; lr != nil && !lr.OK {
		st.FileErrors = map[string][]string{}
		for _, e := range lr.Errors {
			st.FileErrors[e.Pos.File] = append(st.FileErrors[e.Pos.File], e.Error())
		}
	}
	snap := s.snap.Load()
	if snap == nil {
		return st
	}
	st.Generation, st.Applied = snap.Generation, snap.Applied
	var homes map[string]config.Home
	if snap.Plan != nil && snap.Plan.Config != nil {
		homes = config.Homes(snap.Plan.Config)
	}
	for name, e := range snap.envs {
		es := e.status()
		if h, ok := homes[name]; ok {
			es.Home = &h
		}
		st.Environments[name] = es
	}
	for name, g := range snap.groups {
		if !g.notAfter.IsZero() {
			st.Certificates[name] = g.notAfter
		}
	}
	return st
}

// RecordReload keeps the outcome of a reload attempt for /status and
// counts it in edged_config_reloads_total.
func (s *Server) RecordReload(rec ReloadRecord) {
	if rec.OK {
		reloadsOK.Inc()
	} else {
		reloadsFailed.Inc()
	}
	s.statusMu.Lock()
	s.lastResult = &rec
	s.statusMu.Unlock()
}
