package edge

import (
	"math"
	"sync"
	"time"
)

// The status page's series: every environment's requests per second and
// p99 latency, sampled once a second for the last 15 minutes.
const (
	seriesLen = 900 // samples kept per environment: 15 minutes at one a second
	// rateWindow is the span (seconds) the current rates on /status cover:
	// long enough that one slow second does not make the p99 jump.
	rateWindow = 10
	// sparkStep is how many samples one point of a sparkline sums up, so
	// that /status carries 180 points per series rather than 900.
	sparkStep = 5
)

// sample is one second of an environment.
type sample struct {
	reqs  float32 // requests finished in the second
	p99ms float32 // their p99 latency in milliseconds; 0 without requests
}

// counts is an environment's (or proxy's) cumulative counters at one tick.
type counts struct {
	reqs, errs uint64 // finished requests, and those of them that were 5xx
	buckets    [histogramBuckets]uint64
}

// histogramBuckets is len(latencyBuckets)+1, the slots of a leHistogram
// (TestSamplerBucketCount keeps them equal).
const histogramBuckets = 16

func (c *counts) read(m *requestMetrics) {
	c.reqs = 0
	for i := 1; i <= 5; i++ {
		c.reqs += m.byClass[i].Load()
	}
	c.errs = m.byClass[5].Load()
	for i := range c.buckets {
		c.buckets[i] = m.latency.counts[i].Load()
	}
}

// envSeries is the sampled history of one environment, by name: a reload
// that rebuilds the environment keeps it.
type envSeries struct {
	env  *Env   // the runtime sampled last
	mark uint64 // the sampler's tick that saw the environment last
	// base is what the environment's runtimes replaced by reloads had
	// counted: added to the current one's counts, which start at zero.
	base counts
	ring [seriesLen]sample
	next int // where the next sample goes
	held int // samples in ring, up to seriesLen
	// window holds the counters of the last rateWindow+1 ticks, the
	// current one at (tick % len).
	window [rateWindow + 1]counts
	ticks  int // seconds the environment has been sampled: the first tick sets the base
	// proxyPrev and proxyRate follow env.plan.Proxies (sorted by name):
	// the count at the last rate update and the rate it gave; pticks is
	// the seconds env (this runtime) has been sampled.
	pticks    int
	proxyPrev []uint64
	proxyRate []float64
}

// sampler owns the series of every serving environment. Its tick is the
// only writer; /status reads under mu, which a tick holds for a few
// microseconds per environment.
type sampler struct {
	mu     sync.Mutex
	series map[string]*envSeries
	seen   uint64 // tick number, to drop the series of removed environments
}

func newSampler() *sampler {
	return &sampler{series: map[string]*envSeries{}}
}

// run samples snap() once a second until stop is closed.
func (sp *sampler) run(snap func() *Snapshot, stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if s := snap(); s != nil {
				sp.tick(s)
			}
		}
	}
}

// tick takes one sample of every environment of snap and drops the
// series of environments snap no longer has. It allocates only for an
// environment it has not seen, or one a reload rebuilt.
func (sp *sampler) tick(snap *Snapshot) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.seen++
	for name, e := range snap.envs {
		es := sp.series[name]
		if es == nil {
			es = &envSeries{}
			sp.series[name] = es
		}
		es.mark = sp.seen
		es.sample(e)
	}
	if len(sp.series) != len(snap.envs) {
		for name, es := range sp.series {
			if es.mark != sp.seen {
				delete(sp.series, name)
			}
		}
	}
}

func (es *envSeries) sample(e *Env) {
	switch es.env {
	case nil:
		// The first tick of an environment sets the base of its deltas:
		// this second shows nothing rather than every request so far.
		es.env, es.ticks = e, 0
		var c counts
		c.read(e.metrics)
		for i := range es.window {
			es.window[i] = c
		}
		es.startProxies(e)
		es.push(sample{})
		return
	case e:
	default:
		// A reload rebuilt the environment. Where its new runtime counts
		// on in the old one's series (its labels unchanged: newEnv),
		// both runtimes' requests are in them already. Otherwise it
		// counts from zero, and the series goes on from the old
		// runtime's counts as they are now: this second shows the
		// requests both runtimes finished in it, not a dip to zero, and
		// the rates' window spans the reload. (What the old one finishes
		// later, draining, is not counted here then.)
		if es.env.metrics != e.metrics {
			var old counts
			old.read(es.env.metrics)
			es.base.add(&old)
		}
		es.env = e
		es.startProxies(e)
	}
	es.ticks++
	es.pticks++
	cur := &es.window[es.ticks%len(es.window)]
	prev := &es.window[(es.ticks-1)%len(es.window)]
	cur.read(e.metrics)
	cur.add(&es.base)
	var d counts
	delta(&d, cur, prev)
	es.push(sample{reqs: float32(d.reqs), p99ms: float32(p99ms(&d))})
	if es.pticks%rateWindow == 0 {
		for i, px := range e.plan.Proxies {
			n := e.proxies[px.Name].requests()
			es.proxyRate[i] = float64(n-es.proxyPrev[i]) / rateWindow
			es.proxyPrev[i] = n
		}
	}
}

// startProxies bases the proxies' rates on e's counts now: they show
// after a whole window of e.
func (es *envSeries) startProxies(e *Env) {
	es.pticks = 0
	es.proxyPrev = make([]uint64, len(e.plan.Proxies))
	es.proxyRate = make([]float64, len(e.plan.Proxies))
	for i, px := range e.plan.Proxies {
		es.proxyPrev[i] = e.proxies[px.Name].requests()
	}
}

func (es *envSeries) push(s sample) {
	es.ring[es.next] = s
	es.next = (es.next + 1) % seriesLen
	if es.held < seriesLen {
		es.held++
	}
}

// add adds o to c.
func (c *counts) add(o *counts) {
	c.reqs += o.reqs
	c.errs += o.errs
	for i := range c.buckets {
		c.buckets[i] += o.buckets[i]
	}
}

// delta sets d to cur-prev.
func delta(d, cur, prev *counts) {
	d.reqs = cur.reqs - prev.reqs
	d.errs = cur.errs - prev.errs
	for i := range d.buckets {
		d.buckets[i] = cur.buckets[i] - prev.buckets[i]
	}
}

// p99ms estimates the 99th percentile (milliseconds) of the latencies in
// c's buckets, interpolating linearly inside the bucket it falls in as
// Prometheus' histogram_quantile does. It is 0 without requests, and the
// last bound for a percentile beyond it.
func p99ms(c *counts) float64 {
	var total uint64
	for _, n := range c.buckets {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := 0.99 * float64(total)
	var cum uint64
	for i, n := range c.buckets {
		if n == 0 || float64(cum+n) < rank {
			cum += n
			continue
		}
		if i == len(latencyBuckets) {
			break
		}
		lower := 0.0
		if i > 0 {
			lower = latencyBuckets[i-1]
		}
		upper := latencyBuckets[i]
		return 1000 * (lower + (upper-lower)*(rank-float64(cum))/float64(n))
	}
	return 1000 * latencyBuckets[len(latencyBuckets)-1]
}

// EnvRates are an environment's rates over the last 10 seconds and its
// sparkline series on /status.
type EnvRates struct {
	RequestsPerSecond float64 `json:"requests_per_second"`
	Errors5xxPerSec   float64 `json:"errors_5xx_per_second"`
	P99Ms             float64 `json:"p99_ms"` // 0 without requests
	// Series covers the last 15 minutes, oldest first, one point per
	// StepSeconds: the mean requests per second and the highest p99 of
	// the step. It is shorter while edged has run for less. /status
	// leaves it out unless asked (?series=1).
	Series *Series `json:"series,omitempty"`
}

// Series is a sparkline's data.
type Series struct {
	StepSeconds       int       `json:"step_seconds"`
	RequestsPerSecond []float32 `json:"requests_per_second"`
	P99Ms             []float32 `json:"p99_ms"`
}

// rates returns what the series of env name say, and the proxies' rates
// by name.
func (sp *sampler) rates(name string) (EnvRates, map[string]float64) {
	r := EnvRates{Series: &Series{StepSeconds: sparkStep, RequestsPerSecond: []float32{}, P99Ms: []float32{}}}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	es := sp.series[name]
	if es == nil {
		return r, nil
	}
	if span := min(es.ticks, rateWindow); span > 0 {
		cur := &es.window[es.ticks%len(es.window)]
		old := &es.window[(es.ticks-span)%len(es.window)]
		var d counts
		delta(&d, cur, old)
		r.RequestsPerSecond = float64(d.reqs) / float64(span)
		r.Errors5xxPerSec = float64(d.errs) / float64(span)
		r.P99Ms = round2(p99ms(&d))
	}
	points := es.held / sparkStep
	start := es.next - points*sparkStep
	for p := 0; p < points; p++ {
		var sum, worst float32
		for k := 0; k < sparkStep; k++ {
			s := es.ring[(start+p*sparkStep+k+seriesLen)%seriesLen]
			sum += s.reqs
			worst = max(worst, s.p99ms)
		}
		r.Series.RequestsPerSecond = append(r.Series.RequestsPerSecond, sum/sparkStep)
		r.Series.P99Ms = append(r.Series.P99Ms, float32(round2(float64(worst))))
	}
	var prox map[string]float64
	if es.pticks >= rateWindow {
		prox = make(map[string]float64, len(es.proxyRate))
		for i, px := range es.env.plan.Proxies {
			prox[px.Name] = es.proxyRate[i]
		}
	}
	return r, prox
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }
