package main

import (
	"bytes"
	"strings"
	"testing"
)

func csvRows(lines ...string) [][]string {
	rows := [][]string{{"scenario", "contender", "round", "metric", "value"}}
	for _, l := range lines {
		rows = append(rows, strings.Split(l, ","))
	}
	return rows
}

// containsAll fails the test for each of wants that s lacks.
func containsAll(t *testing.T, s string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}

// TestIsolationPairedRatio: the isolation table leads with the paired
// ratio, the median over rounds, and compares edged with nginx on it; the
// pairs' table pools every pair of every round.
func TestIsolationPairedRatio(t *testing.T) {
	var out bytes.Buffer
	render(&out, csvRows(
		"isolation,edged,1,p99_ratio_pairs,1.02",
		"isolation,edged,2,p99_ratio_pairs,0.98",
		"isolation,edged,3,p99_ratio_pairs,1.10",
		"isolation,edged,1,p99_ratio,1.40",
		"isolation,nginx,1,p99_ratio_pairs,2.04",
		"isolation,nginx,1,p99_ratio,3.00",
		"iso_pair,edged,1,ratio,0.90",
		"iso_pair,edged,1,ratio,1.30",
		"iso_pair,edged,2,ratio,1.00",
	))
	containsAll(t, out.String(),
		"| paired ratio |",
		"| edged | 1.02 (0.98–1.10) |",
		"**edged ÷ nginx, paired ratio: 0.50× — edged wins.**",
		"### Isolation: every pair of the rows above",
		"| edged | 1.00 (0.90–1.30) |",
	)
}

// TestIsolationBeforePairs: a CSV written before pairs (no paired ratio)
// is compared on the ratio of the sets, and shows no paired column.
func TestIsolationBeforePairs(t *testing.T) {
	var out bytes.Buffer
	render(&out, csvRows(
		"isolation,edged,1,p99_ratio,1.20",
		"isolation,nginx,1,p99_ratio,4.00",
	))
	s := out.String()
	if !strings.Contains(s, "**edged ÷ nginx, ratio of the sets: 0.30× — edged wins.**") {
		t.Errorf("no comparison on the ratio of the sets:\n%s", s)
	}
	if strings.Contains(s, "| paired ratio |") {
		t.Errorf("a paired column without paired figures:\n%s", s)
	}
}

// TestAcrossRuns: each goal's figure per run, as the report compares it
// (edged's median ÷ nginx's), a miss in bold, the runs it holds in
// counted among those that measured it, and a run without the scenario
// shown as a dash and left out of the count.
func TestAcrossRuns(t *testing.T) {
	run1, _ := load(csvRows(
		"h1,edged,1,p99_ms,9.0",
		"h1,edged,2,p99_ms,11.0",
		"h1,nginx,1,p99_ms,10.0",
		"isolation,edged,1,p99_ratio_pairs,1.20",
		"isolation,edged,1,p99_flooded_ms,2.7",
		"isolation,haproxy,1,p99_flooded_ms,3.0",
		"iso_pair,edged,1,ratio,1.20",
		"iso_pair,edged,1,ratio,1.00",
		"hung,edged,1,p99_ratio_pairs,1.10",
		"hung_pair,edged,1,ratio,1.10",
		"hung_pair,edged,1,ratio,1.30",
	))
	run2, _ := load(csvRows(
		"iso_pair,edged,1,ratio,1.05",
		"h1,edged,1,p99_ms,12.0",
		"h1,nginx,1,p99_ms,10.0",
	))
	var out bytes.Buffer
	acrossRuns(&out, []string{"one", "two"}, []map[key][]float64{run1, run2})
	s := out.String()
	containsAll(t, s,
		"Runs, in the order of the figures: one, two.",
		"| h1, 1 worker, rule on: p99 ÷ nginx | ≤ 1.00 | 1.00, **1.20** | 1 of 2 | 1.10 |",
		"| isolation, queue 32: B's paired p99 ratio | ≤ 1.05 | **1.20**, — | 0 of 1 | 1.20 |",
		"| isolation, queue 32: B's p99 flooded ÷ HAProxy's (reference) | ≤ 1.00 | 0.90, — | 1 of 1 | 0.90 |",
		"- isolation, edged, every pair of the runs pooled: median pair ratio 1.05 over 3 pairs, 66% of them ≤ 1.05.",
		"| hung proxy: sibling's paired p99 ratio | ≤ 1.20 | 1.10, — | 1 of 1 | 1.10 |",
		"- hung proxy, edged, every pair of the runs pooled: median pair ratio 1.20 over 2 pairs, 50% of them ≤ 1.20.",
	)
	if strings.Contains(s, "h2: CPU") {
		t.Errorf("a goal no run measured is listed:\n%s", s)
	}
}
