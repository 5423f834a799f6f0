package edge

import (
	"bytes"
	"io"
	"strings"

	"github.com/VictoriaMetrics/metrics"
)

// family is one metric family of /metrics: its Prometheus type and the
// HELP text Prometheus and Grafana show.
type family struct {
	typ, help string
}

// families are edged's own metric families. Every edged_ series must have
// its family here: writeExposition gives a family missing from it the
// type "untyped" and no real help, which TestMetricsExposition refuses.
var families = map[string]family{
	"edged_requests_total":                                {"counter", "Requests answered, by environment (and proxy with rules.prometheus) and status class."},
	"edged_request_duration_seconds":                      {"histogram", "Time from the start of a request to its last byte, by environment (and proxy with rules.prometheus)."},
	"edged_request_bytes_total":                           {"counter", "Request body bytes read from clients."},
	"edged_response_bytes_total":                          {"counter", "Response body bytes written to clients."},
	"edged_pool_workers":                                  {"gauge", "Workers of the environment: requests it serves at once."},
	"edged_pool_in_flight":                                {"gauge", "Workers in use."},
	"edged_pool_queued":                                   {"gauge", "Requests waiting in the queue for a worker."},
	"edged_pool_rejected_total":                           {"counter", "Requests answered 503 env.overloaded, by reason (queue_full, queue_timeout)."},
	"edged_pool_admitted_total":                           {"counter", "Requests that got a worker."},
	"edged_environment_requests_held":                     {"gauge", "Requests held (holding no worker) until their 503 after reject_delay."},
	"edged_pool_held_total":                               {"counter", "Holds ended: refused after reject_delay, or the client left."},
	"edged_pool_hold_off":                                 {"gauge", "1 while requests past the full queue are refused at once because the hold bound was reached."},
	"edged_pool_hold_offs_total":                          {"counter", "Hold-off windows started (the hold bound reached)."},
	"edged_pool_proxy_max_in_flight":                      {"gauge", "Workers a proxy limited to a share of its environment may use."},
	"edged_pool_proxy_in_flight":                          {"gauge", "Workers in use by a proxy limited to a share."},
	"edged_pool_proxy_queued":                             {"gauge", "Requests of a proxy limited to a share waiting for a worker."},
	"edged_pool_proxy_rejected_total":                     {"counter", "Requests of a proxy limited to a share answered 503."},
	"edged_upstream_node_healthy":                         {"gauge", "1 when the upstream node takes requests, 0 while ejected or failing its health check."},
	"edged_upstream_requests_total":                       {"counter", "Requests given to the upstream node, those another node failed included; a resend on a fresh connection to it counts once."},
	"edged_upstream_failures_total":                       {"counter", "Requests the upstream node failed: connect failure, timeout, bad response, or 502/503/504."},
	"edged_upstream_connections_total":                    {"counter", "Connections dialed to the upstream node, successful or not."},
	"edged_upstream_ejections_total":                      {"counter", "Passive health ejections of the upstream node."},
	"edged_upstream_retries_total":                        {"counter", "Requests sent again after this node failed them: on a fresh connection to it (kind fresh_connection), or to another node (kind other_node)."},
	"edged_upstream_retries_denied_total":                 {"counter", "Retries the upstream's retry budget refused: the answer in hand (a 502/503/504, or the failure) went to the client instead."},
	"edged_requests_refused_total":                        {"counter", "Requests refused before reaching an environment, by reason and virtual host (empty when none was known)."},
	"edged_tls_handshakes_total":                          {"counter", "TLS handshakes by outcome and virtual host (empty when the server name matched none)."},
	"edged_config_reloads_total":                          {"counter", "Reload attempts by result."},
	"edged_config_generation":                             {"gauge", "Generation of the configuration serving now."},
	"edged_config_last_reload_success_timestamp_seconds":  {"gauge", "Unix time of the last successful reload."},
	"edged_config_last_reload_successful":                 {"gauge", "0 while the last reload attempt was refused (the previous generation serves), else 1."},
	"edged_certificate_not_after_seconds":                 {"gauge", "Unix time at which the virtual host's certificate chain stops verifying: the earliest end of the leaf and of the intermediates sent with it."},
	"edged_client_ca_not_after_seconds":                   {"gauge", "Unix time at which the first of the CAs of the virtual host's client_ca_file ends (the earliest NotAfter of them all): client certificates it issued stop verifying then."},
	"edged_upstream_ca_not_after_seconds":                 {"gauge", "Unix time at which the first of the CAs of the upstream's tls_ca_file ends (the earliest NotAfter of them all): nodes whose certificates it issued stop verifying then, each request a 502."},
	"edged_upstream_client_certificate_not_after_seconds": {"gauge", "Unix time at which the upstream's tls_cert_file, the client certificate shown to its https nodes, stops verifying: the earliest end of the leaf and of the intermediates sent with it."},
	"edged_access_log_dropped_total":                      {"counter", "Access log lines dropped because the log's writer was behind."},
	"edged_stderr_lines_dropped_total":                    {"counter", "Lines of edged's own log dropped because stderr was not taking them (a pipe nobody reads, journald stalled)."},
	"edged_log_lines_suppressed_total":                    {"counter", "Access and audit lines of requests whose client went away (499) left out by the log budget."},
	"edged_client_connections":                            {"gauge", "Clients' connections open on the public listeners."},
	"edged_websocket_tunnels":                             {"gauge", "WebSocket tunnels open, those of the environment's instance a reload replaced, still draining, included."},
	"edged_client_connections_limit_reached_total":        {"counter", "Times an accept loop found max_connections reached and stopped accepting until a connection closed."},
}

func init() {
	// VictoriaMetrics then writes a TYPE line for the Go and process
	// families it adds; writeExposition keeps their types and writes every
	// family's HELP and TYPE itself.
	metrics.ExposeMetadata(true)
}

// writeExposition writes raw, series lines with or without "# HELP" and
// "# TYPE" lines in any order (VictoriaMetrics writes one set after the
// other, so the families of environments interleave), grouped by family,
// each family once, preceded by its HELP and TYPE. Types come from
// families, then from the TYPE lines in raw; a counter whose name does
// not end in _total (Go's cgo and forced-GC counts) is written untyped,
// and a "gauge" that does is written a counter (the process' I/O totals),
// so that every counter follows Prometheus' naming.
func writeExposition(w io.Writer, raw []byte) {
	types := map[string]string{}
	var order []string
	lines := map[string][][]byte{}
	for len(raw) > 0 {
		var line []byte
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			line, raw = raw, nil
		}
		if len(line) == 0 {
			continue
		}
		if line[0] == '#' {
			if f := strings.Fields(string(line)); len(f) == 4 && f[1] == "TYPE" {
				if _, ok := types[f[2]]; !ok {
					types[f[2]] = f[3]
				}
			}
			continue
		}
		name := line
		if i := bytes.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		fam := familyOf(string(name), types)
		if _, ok := lines[fam]; !ok {
			order = append(order, fam)
		}
		lines[fam] = append(lines[fam], line)
	}
	var b bytes.Buffer
	for _, fam := range order {
		f, ok := families[fam]
		if !ok {
			f = family{typ: types[fam], help: foreignHelp(fam)}
			switch {
			case f.typ == "":
				f.typ = "untyped"
			case f.typ == "counter" && !strings.HasSuffix(fam, "_total"):
				f.typ = "untyped"
			case f.typ == "gauge" && strings.HasSuffix(fam, "_total"):
				f.typ = "counter"
			}
		}
		b.WriteString("# HELP ")
		b.WriteString(fam)
		b.WriteByte(' ')
		b.WriteString(f.help)
		b.WriteString("\n# TYPE ")
		b.WriteString(fam)
		b.WriteByte(' ')
		b.WriteString(f.typ)
		b.WriteByte('\n')
		for _, l := range lines[fam] {
			b.Write(l)
			b.WriteByte('\n')
		}
	}
	_, _ = w.Write(b.Bytes())
}

// familyOf is the family a sample named name belongs to: a histogram's or
// summary's _bucket, _sum and _count samples belong to the base name.
func familyOf(name string, types map[string]string) string {
	if _, ok := families[name]; ok {
		return name
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		t := families[base].typ
		if t == "" {
			t = types[base]
		}
		if t == "histogram" || (t == "summary" && suffix != "_bucket") {
			return base
		}
	}
	return name
}

// foreignHelp is the HELP text of the Go runtime and process families
// that VictoriaMetrics/metrics writes without one.
func foreignHelp(fam string) string {
	switch {
	case strings.HasPrefix(fam, "go_"):
		return "Go runtime statistic (VictoriaMetrics/metrics)."
	case strings.HasPrefix(fam, "process_"):
		return "Process statistic (VictoriaMetrics/metrics)."
	}
	return "Undescribed series."
}
