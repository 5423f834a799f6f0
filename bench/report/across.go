package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
)

// target is one of the figures issues 12 and 14 set a goal for: who's
// metric in scen (the median of its rounds), divided by vs's when vs is
// set, as each run's report compares them.
type target struct {
	label         string
	scen, who, vs string
	metric        string
	limit         float64
	lowerBetter   bool
	reference     bool // not edged's figure: shown beside edged's
}

// targets are the goals of issue 14 (HTTPS/1.1 and HTTP/2 against nginx)
// and issue 12 (isolation), with HAProxy's figure beside the p99 and
// isolation goals for reference, and B's p99 flooded on edged against
// HAProxy's (the paired ratio compares each proxy with itself). In the
// full runs edgedB is edged without rules.prometheus (run.sh's
// EDGED_B=bin/edged PROMETHEUS_B=off), whose CPU goal is the stricter one.
var targets = append(append(h1Targets("h1", "1 worker"), h1Targets("h1w2", "2 workers")...),
	target{label: "h2: CPU ÷ nginx", scen: "h2", who: "edged", vs: "nginx", metric: "cpu_us_per_req", limit: 1.3, lowerBetter: true},
	target{label: "isolation, queue 32: B's paired p99 ratio", scen: "isolation", who: "edged", metric: "p99_ratio_pairs", limit: 1.05, lowerBetter: true},
	target{label: "isolation, queue 1024: B's paired p99 ratio", scen: "isolation", who: "edged-q1024", metric: "p99_ratio_pairs", limit: 1.05, lowerBetter: true},
	target{label: "isolation, HAProxy: B's paired p99 ratio", scen: "isolation", who: "haproxy", metric: "p99_ratio_pairs", limit: 1.05, lowerBetter: true, reference: true},
	target{label: "isolation, haproxy-split (A on a HAProxy process of its own): B's paired p99 ratio", scen: "isolation", who: "haproxy-split", metric: "p99_ratio_pairs", limit: 1.05, lowerBetter: true, reference: true},
	target{label: "isolation, queue 32: B's p99 flooded ÷ HAProxy's", scen: "isolation", who: "edged", vs: "haproxy", metric: "p99_flooded_ms", limit: 1, lowerBetter: true, reference: true},
	target{label: "hung proxy: sibling's success %", scen: "hung", who: "edged", metric: "ok_success_pct", limit: 99},
	target{label: "hung proxy: sibling's paired p99 ratio", scen: "hung", who: "edged", metric: "p99_ratio_pairs", limit: 1.2, lowerBetter: true},
	target{label: "hung proxy: sibling's p99 ratio of the sets (before pairs)", scen: "hung", who: "edged", metric: "p99_ratio", limit: 1.2, lowerBetter: true},
	target{label: "open loop at 2×: B's p99 ratio", scen: "openloop", who: "edged@320", metric: "p99_ratio", limit: 1.5, lowerBetter: true},
)

// h1Targets are an HTTPS/1.1 scenario's goals against nginx: CPU (≤ 1.15×
// with the rule, ≤ 1.10× without), req/s and p99, for edged and edgedB,
// then HAProxy's p99 for reference.
func h1Targets(scen, workers string) []target {
	var ts []target
	for _, e := range []struct {
		who, name string
		cpu       float64
	}{{"edged", "rule on", 1.15}, {"edgedB", "edgedB", 1.10}} {
		p := scen + ", " + workers + ", " + e.name + ": "
		ts = append(ts,
			target{label: p + "CPU ÷ nginx", scen: scen, who: e.who, vs: "nginx", metric: "cpu_us_per_req", limit: e.cpu, lowerBetter: true},
			target{label: p + "req/s ÷ nginx", scen: scen, who: e.who, vs: "nginx", metric: "rps", limit: 1},
			target{label: p + "p99 ÷ nginx", scen: scen, who: e.who, vs: "nginx", metric: "p99_ms", limit: 1, lowerBetter: true})
	}
	return append(ts, target{label: scen + ", " + workers + ", HAProxy: p99 ÷ nginx", scen: scen, who: "haproxy", vs: "nginx", metric: "p99_ms", limit: 1, lowerBetter: true, reference: true})
}

// value is t's figure in one run's values, and whether the run has it.
func (t target) value(vals map[key][]float64) (float64, bool) {
	v := vals[key{t.scen, t.who, t.metric}]
	if len(v) == 0 {
		return 0, false
	}
	m, _, _ := stats(v)
	if t.vs == "" {
		return m, true
	}
	d := vals[key{t.scen, t.vs, t.metric}]
	if len(d) == 0 {
		return 0, false
	}
	dm, _, _ := stats(d)
	if dm == 0 {
		return 0, false
	}
	return m / dm, true
}

func (t target) holds(v float64) bool {
	if t.lowerBetter {
		return v <= t.limit
	}
	return v >= t.limit
}

// acrossRuns writes, target by target, its figure in each run (a miss in
// bold), in how many of the runs that measured it the goal holds, and
// the median over those runs with its 95% confidence interval; then every
// pair of the runs pooled, row by row.
func acrossRuns(w io.Writer, names []string, runs []map[key][]float64) {
	fmt.Fprintf(w, "### Targets across runs\n\nRuns, in the order of the figures: %s. Each figure as the run's report compares it: the median of edged's rounds (÷ the median of nginx's); a miss in bold.\n\n", strings.Join(names, ", "))
	fmt.Fprintf(w, "| target | goal | per run | holds in | median (95%% CI) |\n|---|---|---|---:|---:|\n")
	for _, t := range targets {
		var cells []string
		var got []float64
		held := 0
		for _, vals := range runs {
			v, ok := t.value(vals)
			if !ok {
				cells = append(cells, "—")
				continue
			}
			got = append(got, v)
			c := num(v)
			if t.holds(v) {
				held++
			} else {
				c = "**" + c + "**"
			}
			cells = append(cells, c)
		}
		if len(got) == 0 {
			continue
		}
		goal := "≥ " + num(t.limit)
		if t.lowerBetter {
			goal = "≤ " + num(t.limit)
		}
		label := t.label
		if t.reference {
			label += " (reference)"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %d of %d | %s |\n", label, goal, strings.Join(cells, ", "), held, len(got), medianCell(got))
	}
	fmt.Fprintln(w)
	// Pairs: every pair of every run pooled, which weighs each pair alike
	// where the table's median weighs each run alike.
	for _, who := range pairRows(runs, "iso_pair") {
		pooledPairs(w, runs, "iso_pair", "isolation", who, 1.05)
	}
	for _, who := range pairRows(runs, "hung_pair") {
		pooledPairs(w, runs, "hung_pair", "hung proxy", who, 1.2)
	}
	fmt.Fprintln(w)
}

// pairRows names the rows with pairs in scen in any run: edged's first,
// then edged's variants (edged-q1024, edged-d2s, ...), then the others,
// each group in name order.
func pairRows(runs []map[key][]float64, scen string) []string {
	seen := map[string]bool{}
	var rows []string
	for _, vals := range runs {
		for k := range vals {
			if k.scen == scen && k.metric == "ratio" && !seen[k.who] {
				seen[k.who] = true
				rows = append(rows, k.who)
			}
		}
	}
	group := func(who string) int {
		switch {
		case who == "edged":
			return 0
		case strings.HasPrefix(who, "edged-"):
			return 1
		}
		return 2
	}
	sort.Slice(rows, func(i, j int) bool {
		if gi, gj := group(rows[i]), group(rows[j]); gi != gj {
			return gi < gj
		}
		return rows[i] < rows[j]
	})
	return rows
}

// pooledPairs writes the median of who's pair ratios (scen's rows) over
// every run, its 95% confidence interval (medianCI) when there are pairs
// enough for one, and the share of them within limit, as a line named
// name; nothing when no run has any.
func pooledPairs(w io.Writer, runs []map[key][]float64, scen, name, who string, limit float64) {
	var pairs []float64
	for _, vals := range runs {
		pairs = append(pairs, vals[key{scen, who, "ratio"}]...)
	}
	if len(pairs) == 0 {
		return
	}
	within := 0
	for _, r := range pairs {
		if r <= limit {
			within++
		}
	}
	med, ci := medianWithCI(pairs)
	if ci != "" {
		ci = " (95% CI " + ci + ")"
	}
	fmt.Fprintf(w, "- %s, %s, every pair of the runs pooled: median pair ratio %s%s over %d pairs, %d%% of them ≤ %s.\n", name, who, num(med), ci, len(pairs), 100*within/len(pairs), num(limit))
}

// medianCell is v's median, with its 95% confidence interval in brackets
// when v has values enough for one.
func medianCell(v []float64) string {
	med, ci := medianWithCI(v)
	if ci == "" {
		return num(med)
	}
	return num(med) + " (" + ci + ")"
}

// medianWithCI is v's median and its 95% confidence interval (medianCI)
// as "lo–hi", or "" when v has too few values for one.
func medianWithCI(v []float64) (float64, string) {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	med, _, _ := stats(s)
	lo, hi, ok := medianCI(s)
	if !ok {
		return med, ""
	}
	return med, num(lo) + "–" + num(hi)
}

// medianCI is a distribution-free 95% confidence interval for the median
// of the population sorted was drawn from: the j-th smallest and the j-th
// largest value, j the largest rank with P(B < j) ≤ 2.5% for B binomial
// (n, 1/2), the count of draws below the median. So the interval holds
// the median with at least 95% probability whatever the values'
// distribution, as long as the draws are independent (pooled pairs of
// one row share its conditions, so for them the interval is if anything
// too narrow). ok is false below 6 values, where no such j exists.
func medianCI(sorted []float64) (lo, hi float64, ok bool) {
	n := len(sorted)
	lgN, _ := math.Lgamma(float64(n + 1))
	cdf, j := 0.0, 0 // cdf = P(B ≤ k)
	for k := 0; k < n; k++ {
		lgK, _ := math.Lgamma(float64(k + 1))
		lgNK, _ := math.Lgamma(float64(n - k + 1))
		cdf += math.Exp(lgN - lgK - lgNK - float64(n)*math.Ln2)
		if cdf > 0.025 {
			break
		}
		j = k + 1 // P(B < k+1) ≤ 2.5%
	}
	if j == 0 {
		return 0, 0, false
	}
	return sorted[j-1], sorted[n-j], true
}
