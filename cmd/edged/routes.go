package main

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"edged/edge"
	"edged/internal/config"
	"edged/internal/termsafe"
)

// maxRouteTargets is how many of a route's nodes `edged routes` lists,
// then how many more it has, as /status lists a certificate's names: an
// upstream may have 10,000 nodes, and each of its proxies' rows on each
// hostname of their groups listed every one.
const maxRouteTargets = 10

func cmdRoutes(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("routes", "routes -c DIR", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	plan, err := loadPlan(*dir, stderr)
	if err != nil {
		return err
	}
	if err := printRoutes(stdout, plan); err != nil {
		return err
	}
	// Who may change each environment: the owner and group of its home.
	homes := config.Homes(plan.Config)
	envs := slices.Sorted(maps.Keys(homes))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nENVIRONMENT\tHOME\tOWNER\tGROUP")
	for _, e := range envs {
		h := homes[e]
		// A home is a directory its parent's writers name: a control
		// character in it would reach the terminal.
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e, visibleName(h.Dir), visibleName(orUnknown(h.Owner)), visibleName(orUnknown(h.Group)))
	}
	return tw.Flush()
}

// routeColumns are the heads of the routing table's columns.
var routeColumns = [...]string{"HOSTNAME", "BASE PATH", "GROUP", "ENVIRONMENT", "PROXY", "TARGETS"}

// printRoutes writes the routing table: a row for each hostname and base
// path, aligned as text/tabwriter aligns them (each column as wide as its
// widest cell and 2 spaces; the last, the targets, as it is). The rows are
// hostnames × routes (1,000 × 1,000 is a million): they are written one at
// a time, into one buffer, each column's width found first from the
// names, not from rows made and kept (a tabwriter keeps every row until
// it flushes: a million rows of 10 nodes took 2 GB and 70 s). A row lists
// maxRouteTargets nodes at most, and a name with nothing to escape is
// appended as it is, not copied by visibleName first.
//
// Every cell is shown as visibleName shows it: a base path may hold a
// bidirectional control (config refuses C0 and C1 ones only), which would
// reorder the rest of the line.
func printRoutes(w io.Writer, plan *edge.Plan) error {
	hosts := plan.RouteHosts()
	var width [len(routeColumns) - 1]int
	for i := range width {
		width[i] = len(routeColumns[i])
	}
	seen := make(map[*edge.GroupPlan]bool)
	for _, h := range hosts {
		width[0] = max(width[0], visibleWidth(h.Host))
		if seen[h.Group] {
			continue
		}
		seen[h.Group] = true
		width[2] = max(width[2], visibleWidth(h.Group.Group.Name))
		for _, r := range h.Group.Routes {
			width[1] = max(width[1], visibleWidth(r.BasePath))
			width[3] = max(width[3], visibleWidth(r.Env))
			width[4] = max(width[4], visibleWidth(r.Proxy.Name))
		}
	}
	for i := range width {
		width[i] += 2 // tabwriter's padding
	}

	bw := bufio.NewWriterSize(w, 64<<10)
	var line []byte
	for i, c := range routeColumns[:len(routeColumns)-1] {
		line = appendCell(line, c, width[i])
	}
	line = append(line, routeColumns[len(routeColumns)-1]...)
	line = append(line, '\n')
	if _, err := bw.Write(line); err != nil {
		return err
	}
	for _, h := range hosts {
		line = appendCell(line[:0], h.Host, width[0])
		prefix := len(line)
		for _, r := range h.Group.Routes {
			line = appendCell(line[:prefix], r.BasePath, width[1])
			line = appendCell(line, h.Group.Group.Name, width[2])
			line = appendCell(line, r.Env, width[3])
			line = appendCell(line, r.Proxy.Name, width[4])
			line = appendTargets(line, r)
			line = append(line, '\n')
			if _, err := bw.Write(line); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

// appendCell appends s as visibleName shows it, padded with spaces to
// width runes.
func appendCell(dst []byte, s string, width int) []byte {
	start := len(dst)
	dst = appendVisible(dst, s)
	for n := utf8.RuneCount(dst[start:]); n < width; n++ {
		dst = append(dst, ' ')
	}
	return dst
}

// appendTargets appends the URLs a route forwards to (each node's, with
// the proxy's target path), the first maxRouteTargets of them, and how
// many more it has.
func appendTargets(dst []byte, r edge.RoutePlan) []byte {
	tp := r.Proxy.ForwardPath()
	nodes := r.Upstream.Nodes
	for i, n := range nodes[:min(len(nodes), maxRouteTargets)] {
		if i > 0 {
			dst = append(dst, ' ')
		}
		u := strings.TrimSuffix(n.URL, "/")
		if termsafe.Plain(u) && termsafe.Plain(tp) {
			dst = append(append(dst, u...), tp...)
		} else {
			dst = append(dst, visibleName(u+tp)...)
		}
	}
	if more := len(nodes) - maxRouteTargets; more > 0 {
		dst = append(strconv.AppendInt(append(dst, " and "...), int64(more), 10), " more"...)
	}
	return dst
}

// appendVisible appends s as visibleName shows it, without a copy of a
// name that has nothing to escape (a configuration's names commonly).
func appendVisible(dst []byte, s string) []byte {
	if termsafe.Plain(s) {
		return append(dst, s...)
	}
	return append(dst, visibleName(s)...)
}

// visibleWidth is how many runes visibleName(s) has: a tabwriter's width
// of the cell.
func visibleWidth(s string) int {
	if termsafe.Plain(s) {
		return len(s)
	}
	return utf8.RuneCountInString(visibleName(s))
}
