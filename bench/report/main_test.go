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
	s := out.String()
	for _, want := range []string{
		"| paired ratio |",
		"| edged | 1.02 (0.98–1.10) |",
		"**edged ÷ nginx, paired ratio: 0.50× — edged wins.**",
		"### Isolation: every pair of the rows above",
		"| edged | 1.00 (0.90–1.30) |",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
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
