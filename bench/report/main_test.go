package main

import (
	"bytes"
	"fmt"
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

// TestMedianCI: the ranks of the distribution-free interval for the
// median, as binomial tables give them (n = 6: the extremes; n = 20: the
// 6th and 15th values), none below 6 values; the interval shown on a
// pooled line and in the table's median column; and the pooled lines of
// edged's variants after edged's, before the other rows'.
func TestMedianCI(t *testing.T) {
	seq := func(n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(i + 1)
		}
		return v
	}
	for _, c := range []struct {
		n      int
		lo, hi float64
		ok     bool
	}{{5, 0, 0, false}, {6, 1, 6, true}, {20, 6, 15, true}, {100, 40, 61, true}} {
		lo, hi, ok := medianCI(seq(c.n))
		if lo != c.lo || hi != c.hi || ok != c.ok {
			t.Errorf("medianCI(1..%d) = %v, %v, %v; want %v, %v, %v", c.n, lo, hi, ok, c.lo, c.hi, c.ok)
		}
	}

	var rows []string
	for i := 1; i <= 20; i++ {
		rows = append(rows, fmt.Sprintf("iso_pair,edged-d2s,1,ratio,%.2f", 1+float64(i)/100))
	}
	rows = append(rows, "iso_pair,haproxy,1,ratio,1.10", "iso_pair,edged,1,ratio,1.00", "iso_pair,edged-q1024,1,ratio,1.00")
	run, _ := load(csvRows(rows...))
	var out bytes.Buffer
	acrossRuns(&out, []string{"one"}, []map[key][]float64{run})
	s := out.String()
	want := "- isolation, edged-d2s, every pair of the runs pooled: median pair ratio 1.10 (95% CI 1.06–1.15) over 20 pairs, 25% of them ≤ 1.05."
	if !strings.Contains(s, want) {
		t.Errorf("no %q in:\n%s", want, s)
	}
	var runs []map[key][]float64
	var names []string
	for i, r := range []string{"1.00", "1.02", "1.04", "1.06", "1.08", "1.10"} {
		v, _ := load(csvRows("isolation,edged,1,p99_ratio_pairs," + r))
		runs, names = append(runs, v), append(names, fmt.Sprint(i))
	}
	var table bytes.Buffer
	acrossRuns(&table, names, runs)
	want = "| isolation, queue 32: B's paired p99 ratio | ≤ 1.05 | 1.00, 1.02, 1.04, **1.06**, **1.08**, **1.10** | 3 of 6 | 1.05 (1.00–1.10) |"
	if !strings.Contains(table.String(), want) {
		t.Errorf("no %q in:\n%s", want, table.String())
	}

	e, d, q, h := strings.Index(s, "isolation, edged,"), strings.Index(s, "isolation, edged-d2s,"), strings.Index(s, "isolation, edged-q1024,"), strings.Index(s, "isolation, haproxy,")
	if e < 0 || !(e < d && d < q && q < h) {
		t.Errorf("pooled lines not in the order edged, edged-d2s, edged-q1024, haproxy:\n%s", s)
	}
}
