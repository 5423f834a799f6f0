package edge

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Process-wide series: reloads, generation (refusals: refused.go).
var (
	reloadsOK         = metrics.NewCounter(`edged_config_reloads_total{result="success"}`)
	reloadsFailed     = metrics.NewCounter(`edged_config_reloads_total{result="failure"}`)
	configGeneration  atomic.Uint64
	lastReloadSuccess atomic.Int64 // unix seconds
	// lastReloadFailed is set while the last reload attempt was refused:
	// the files in conf.d are not what serves until one succeeds.
	lastReloadFailed atomic.Bool
	_                = metrics.NewGauge(`edged_config_generation`, func() float64 { return float64(configGeneration.Load()) })
	_                = metrics.NewGauge(`edged_config_last_reload_success_timestamp_seconds`, func() float64 { return float64(lastReloadSuccess.Load()) })
	_                = metrics.NewGauge(`edged_config_last_reload_successful`, func() float64 {
		if lastReloadFailed.Load() {
			return 0
		}
		return 1
	})
)

// latencyBuckets are the upper bounds (seconds) of the request duration
// histogram: Prometheus' defaults with finer steps below 5 ms, where a
// proxy on a LAN spends its time.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// leHistogram is a fixed-bucket histogram written in Prometheus' `le`
// format. VictoriaMetrics' own Histogram writes `vmrange` buckets, which a
// stock Prometheus cannot turn into quantiles.
type leHistogram struct {
	name, labels string // labels without braces: `env="test",proxy="x"`
	counts       []atomic.Uint64
	sumMicros    atomic.Uint64
}

func newLEHistogram(name, labels string) *leHistogram {
	return &leHistogram{name: name, labels: labels, counts: make([]atomic.Uint64, len(latencyBuckets)+1)}
}

// observe records one duration. It takes no lock and allocates nothing.
func (h *leHistogram) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(latencyBuckets) && s > latencyBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumMicros.Add(uint64(d.Microseconds()))
}

func (h *leHistogram) writePrometheus(w io.Writer) {
	var cum uint64
	for i, le := range latencyBuckets {
		cum += h.counts[i].Load()
		fmt.Fprintf(w, "%s_bucket{%s,le=\"%s\"} %d\n", h.name, h.labels, strconv.FormatFloat(le, 'g', -1, 64), cum)
	}
	cum += h.counts[len(latencyBuckets)].Load()
	fmt.Fprintf(w, "%s_bucket{%s,le=\"+Inf\"} %d\n", h.name, h.labels, cum)
	fmt.Fprintf(w, "%s_sum{%s} %g\n", h.name, h.labels, float64(h.sumMicros.Load())/1e6)
	fmt.Fprintf(w, "%s_count{%s} %d\n", h.name, h.labels, cum)
}

// requestMetrics count finished requests: by status class, bytes and
// latency. Every environment has its own (labels env and the
// environment's labels); a proxy of an environment whose rules.prometheus
// is on has its own too (with a proxy label). An instance a reload
// rebuilt with the same labels counts in its predecessor's (newEnv),
// which the predecessor, draining, still counts in. Label values are validated
// names, never request data, so cardinality is bounded by the config.
// Recording a request looks nothing up and takes no lock. The series are
// plain atomics written by the environment's metrics writer rather than
// counters of its metrics.Set: the Set checks every series name it
// creates, which made building an environment with a thousand proxies
// cost a tenth of a second.
type requestMetrics struct {
	labels   string           // without braces: `env="test",proxy="x"`
	byClass  [6]atomic.Uint64 // 1xx..5xx; [0] unused
	bytesIn  atomic.Uint64
	bytesOut atomic.Uint64
	latency  *leHistogram
}

// newRequestMetrics creates the series with labels (without braces).
func newRequestMetrics(labels string) *requestMetrics {
	return &requestMetrics{labels: labels, latency: newLEHistogram("edged_request_duration_seconds", labels)}
}

// record counts one finished request; a nil m counts nothing.
func (m *requestMetrics) record(status int, in, out int64, d time.Duration) {
	if m == nil {
		return
	}
	c := status / 100
	if c < 1 || c > 5 {
		c = 5
	}
	m.byClass[c].Add(1)
	if in > 0 {
		m.bytesIn.Add(uint64(in))
	}
	if out > 0 {
		m.bytesOut.Add(uint64(out))
	}
	m.latency.observe(d)
}

func (m *requestMetrics) writePrometheus(w io.Writer) {
	for c := 1; c <= 5; c++ {
		fmt.Fprintf(w, "edged_requests_total{%s,class=\"%dxx\"} %d\n", m.labels, c, m.byClass[c].Load())
	}
	fmt.Fprintf(w, "edged_request_bytes_total{%s} %d\n", m.labels, m.bytesIn.Load())
	fmt.Fprintf(w, "edged_response_bytes_total{%s} %d\n", m.labels, m.bytesOut.Load())
	m.latency.writePrometheus(w)
}

// writeGauge writes one gauge line; NaN-safe.
func writeGauge(w io.Writer, name string, v float64) {
	if math.IsNaN(v) {
		v = 0
	}
	fmt.Fprintf(w, "%s %s\n", name, strconv.FormatFloat(v, 'f', -1, 64))
}
