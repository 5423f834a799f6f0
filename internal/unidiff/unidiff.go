package unidiff

import (
	"strconv"
	"strings"
)

// Context is the number of unchanged lines shown around each change.
const Context = 3

// maxEdits bounds the search for a shortest edit script: Myers' algorithm
// keeps O(D²) state for D edits. Past it, the rest of the differing middle
// is shown as removed then added: a correct diff, not the shortest.
const maxEdits = 1000

// Unified is the unified diff turning a into b, with the headers
// "--- aName" and "+++ bName"; "" when a and b are equal. A text that does
// not end in a newline gets diff's "\ No newline at end of file" marker.
func Unified(aName, bName, a, b string) string {
	if a == b {
		return ""
	}
	ops := edits(splitLines(a), splitLines(b))
	var w strings.Builder
	w.WriteString("--- " + aName + "\n")
	w.WriteString("+++ " + bName + "\n")
	writeHunks(&w, ops, Context)
	return w.String()
}

// splitLines splits s after each newline; the last line may lack one.
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// op is one line of the edit script: kept (' '), removed ('-') or added
// ('+'); ai and bi are the line's 0-based index in a and in b before it.
type op struct {
	kind   byte
	text   string
	ai, bi int
}

// edits is an edit script from a to b: the common head and tail are kept,
// the middle is Myers' shortest one.
func edits(a, b []string) []op {
	head := 0
	for head < len(a) && head < len(b) && a[head] == b[head] {
		head++
	}
	tail := 0
	for tail < len(a)-head && tail < len(b)-head && a[len(a)-1-tail] == b[len(b)-1-tail] {
		tail++
	}
	ops := make([]op, 0, len(a)+len(b))
	for i := 0; i < head; i++ {
		ops = append(ops, op{' ', a[i], i, i})
	}
	for _, o := range myers(a[head:len(a)-tail], b[head:len(b)-tail]) {
		o.ai += head
		o.bi += head
		ops = append(ops, o)
	}
	for i := tail; i > 0; i-- {
		ai, bi := len(a)-i, len(b)-i
		ops = append(ops, op{' ', a[ai], ai, bi})
	}
	return ops
}

// myers is the shortest edit script from a to b (E. Myers, "An O(ND)
// Difference Algorithm and Its Variations", 1986), found forwards and
// walked back through the saved frontiers.
func myers(a, b []string) []op {
	n, m := len(a), len(b)
	if n == 0 || m == 0 {
		return replaceAll(a, b, 0, 0)
	}
	limit := n + m
	off := limit + 1
	v := make([]int, 2*limit+3)
	var trace [][]int // trace[d]: v[-d-1 .. d+1] before step d
	found := false
	for d := 0; d <= limit && !found; d++ {
		if d > maxEdits {
			return replaceAll(a, b, 0, 0)
		}
		trace = append(trace, append([]int(nil), v[off-d-1:off+d+2]...))
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = v[off+k+1] // down: a line of b added
			} else {
				x = v[off+k-1] + 1 // right: a line of a removed
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x++
				y++
			}
			v[off+k] = x
			if x >= n && y >= m {
				found = true
				break
			}
		}
	}
	var rev []op
	x, y := n, m
	for d := len(trace) - 1; d >= 0; d-- {
		t := trace[d]
		at := func(k int) int { return t[k+d+1] }
		k := x - y
		var pk int
		if k == -d || (k != d && at(k-1) < at(k+1)) {
			pk = k + 1
		} else {
			pk = k - 1
		}
		px := at(pk)
		py := px - pk
		for x > px && y > py {
			x--
			y--
			rev = append(rev, op{' ', a[x], x, y})
		}
		if d > 0 {
			if x == px {
				y--
				rev = append(rev, op{'+', b[y], x, y})
			} else {
				x--
				rev = append(rev, op{'-', a[x], x, y})
			}
		}
		x, y = px, py
	}
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	return rev
}

// replaceAll removes every line of a, then adds every line of b.
func replaceAll(a, b []string, ai, bi int) []op {
	ops := make([]op, 0, len(a)+len(b))
	for i, l := range a {
		ops = append(ops, op{'-', l, ai + i, bi})
	}
	for i, l := range b {
		ops = append(ops, op{'+', l, ai + len(a), bi + i})
	}
	return ops
}

// writeHunks writes the changes of ops with ctx kept lines around each;
// changes closer than 2*ctx kept lines share a hunk, as in diff -u.
func writeHunks(w *strings.Builder, ops []op, ctx int) {
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		start := max(i-ctx, 0)
		last := i
		j := i
		for ; j < len(ops); j++ {
			if ops[j].kind != ' ' {
				last = j
			} else if j-last > 2*ctx {
				break
			}
		}
		end := min(last+ctx+1, len(ops))
		writeHunk(w, ops[start:end])
		i = end
	}
}

func writeHunk(w *strings.Builder, h []op) {
	var na, nb int
	for _, o := range h {
		if o.kind != '+' {
			na++
		}
		if o.kind != '-' {
			nb++
		}
	}
	w.WriteString("@@ -" + rangeOf(h[0].ai, na) + " +" + rangeOf(h[0].bi, nb) + " @@\n")
	for _, o := range h {
		w.WriteByte(o.kind)
		w.WriteString(o.text)
		if !strings.HasSuffix(o.text, "\n") {
			w.WriteString("\n\\ No newline at end of file\n")
		}
	}
}

// rangeOf is diff -u's "start,count" for count lines from 0-based index
// i: ",1" is left out, and an empty range names the line before it.
func rangeOf(i, count int) string {
	switch count {
	case 0:
		return strconv.Itoa(i) + ",0"
	case 1:
		return strconv.Itoa(i + 1)
	}
	return strconv.Itoa(i+1) + "," + strconv.Itoa(count)
}
