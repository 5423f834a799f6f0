package config

import (
	"sort"
	"strconv"
	"strings"
)

// The TOML decoder reports lines for syntax errors only. lineIndex finds the
// line of every table header and key of a file so that validation errors can
// point at the field they are about. It is a small, forgiving scanner, not a
// parser: on input the decoder rejects it may record nonsense, and that is
// fine because such a file never reaches validation.

// lineIndex maps key paths to the line that wrote them. A path names array
// elements by their index within the file: "proxy[2].base_path",
// "upstream[0].nodes[1].url", "environment[0].rules.access_log.path",
// "server.https".
type lineIndex struct {
	lines map[string]int
}

// lookup returns the line of path, or of its nearest ancestor that was
// written, or 0.
func (ix *lineIndex) lookup(path string) int {
	if ix == nil {
		return 0
	}
	for path != "" {
		if n, ok := ix.lines[path]; ok {
			return n
		}
		path = parentPath(path)
	}
	return 0
}

// parentPath drops the last element of a key path: "a.b[2]" → "a.b",
// "a.b" → "a", "a" → "".
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

func indexPath(p string, i int) string {
	return p + "[" + strconv.Itoa(i) + "]"
}

// maxScanDepth bounds the nesting of arrays and inline tables the scanner
// follows; deeper values are skipped (their lines are not needed).
const maxScanDepth = 32

type lineScanner struct {
	s      string
	i      int
	nl     []int          // offsets of '\n'
	lines  map[string]int // path → line
	arrays map[string]int // array-of-tables path → elements seen
	table  string         // path of the current table
}

// scanLines indexes the key paths of one TOML document.
func scanLines(data []byte) *lineIndex {
	s := &lineScanner{
		s:      string(data),
		lines:  make(map[string]int),
		arrays: make(map[string]int),
		// Past a byte order mark, as the decoder reads: else a table
		// header on the first line would not count as one, and every
		// array element after it would be given its successor's lines.
		i: bomLen(data),
	}
	for i := 0; i < len(s.s); i++ {
		if s.s[i] == '\n' {
			s.nl = append(s.nl, i)
		}
	}
	for s.i < len(s.s) {
		s.skipSpace(true)
		if s.i >= len(s.s) {
			break
		}
		if s.s[s.i] == '[' {
			s.header()
		} else {
			s.keyValue(s.table, 0)
		}
		s.skipLine()
	}
	return &lineIndex{lines: s.lines}
}

func (s *lineScanner) lineAt(off int) int {
	return sort.SearchInts(s.nl, off) + 1
}

func (s *lineScanner) record(path string, off int) {
	if _, ok := s.lines[path]; !ok {
		s.lines[path] = s.lineAt(off)
	}
}

func (s *lineScanner) peek() byte {
	if s.i < len(s.s) {
		return s.s[s.i]
	}
	return 0
}

// skipSpace skips blanks; with nl it also skips newlines and comments.
func (s *lineScanner) skipSpace(nl bool) {
	for s.i < len(s.s) {
		switch s.s[s.i] {
		case ' ', '\t', '\r':
			s.i++
		case '\n':
			if !nl {
				return
			}
			s.i++
		case '#':
			if !nl {
				return
			}
			for s.i < len(s.s) && s.s[s.i] != '\n' {
				s.i++
			}
		default:
			return
		}
	}
}

// skipLine moves past the next newline.
func (s *lineScanner) skipLine() {
	for s.i < len(s.s) && s.s[s.i] != '\n' {
		s.i++
	}
	if s.i < len(s.s) {
		s.i++
	}
}

// resolve turns a table path into the path of its current element when it
// names an array of tables: "proxy" → "proxy[3]".
func (s *lineScanner) resolve(p string) string {
	if n := s.arrays[p]; n > 0 {
		return indexPath(p, n-1)
	}
	return p
}

func (s *lineScanner) header() {
	start := s.i
	array := strings.HasPrefix(s.s[s.i:], "[[")
	if array {
		s.i += 2
	} else {
		s.i++
	}
	keys := s.keyPath()
	if len(keys) == 0 {
		return
	}
	p := ""
	for _, k := range keys[:len(keys)-1] {
		p = s.resolve(joinPath(p, k))
	}
	p = joinPath(p, keys[len(keys)-1])
	if array {
		n := s.arrays[p]
		s.arrays[p] = n + 1
		s.record(p, start)
		p = indexPath(p, n)
	} else {
		p = s.resolve(p)
	}
	s.record(p, start)
	s.table = p
}

// keyValue reads key = value in table, a line's or an inline table's,
// the value at nesting depth; where no key followed by '=' stands it
// reads no value and reports false.
func (s *lineScanner) keyValue(table string, depth int) bool {
	start := s.i
	keys := s.keyPath()
	if len(keys) == 0 {
		return false
	}
	s.skipSpace(false)
	if s.peek() != '=' {
		return false
	}
	s.i++
	p := table
	for _, k := range keys {
		p = joinPath(p, k)
		s.record(p, start)
	}
	s.skipSpace(false)
	s.value(p, depth)
	return true
}

// keyPath reads a dotted key: a.b."c.d".'e'.
func (s *lineScanner) keyPath() []string {
	var keys []string
	for {
		s.skipSpace(false)
		k, ok := s.key()
		if !ok {
			return keys
		}
		keys = append(keys, k)
		s.skipSpace(false)
		if s.peek() != '.' {
			return keys
		}
		s.i++
	}
}

func (s *lineScanner) key() (string, bool) {
	switch c := s.peek(); {
	case c == '"' || c == '\'':
		start := s.i
		s.lineString(c)
		raw := s.s[start:s.i]
		if c == '"' {
			if u, err := strconv.Unquote(raw); err == nil {
				return u, true
			}
		}
		return strings.Trim(raw, string(c)), true
	default:
		start := s.i
		for s.i < len(s.s) && isBareKeyChar(s.s[s.i]) {
			s.i++
		}
		return s.s[start:s.i], s.i > start
	}
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// value skips one value, recording the lines of array elements and of the
// keys of inline tables.
func (s *lineScanner) value(p string, depth int) {
	if depth > maxScanDepth {
		s.i = len(s.s)
		return
	}
	switch s.peek() {
	case '"', '\'':
		s.str()
	case '[':
		s.i++
		for n := 0; ; n++ {
			s.skipSpace(true)
			if s.i >= len(s.s) {
				return
			}
			if s.s[s.i] == ']' {
				s.i++
				return
			}
			ep := indexPath(p, n)
			s.record(ep, s.i)
			s.value(ep, depth+1)
			s.skipSpace(true)
			switch s.peek() {
			case ',':
				s.i++
			case ']':
				s.i++
				return
			default:
				return
			}
		}
	case '{':
		s.i++
		for {
			s.skipSpace(true)
			switch s.peek() {
			case 0:
				return
			case '}':
				s.i++
				return
			case ',':
				s.i++
				continue
			}
			if !s.keyValue(p, depth+1) {
				return
			}
			s.skipSpace(true)
			switch s.peek() {
			case ',':
				s.i++
			case '}':
				s.i++
				return
			default:
				return
			}
		}
	default:
		for s.i < len(s.s) && !strings.ContainsRune(",]}#\n", rune(s.s[s.i])) {
			s.i++
		}
	}
}

// str skips a basic, literal or multi-line string.
func (s *lineScanner) str() {
	q := s.s[s.i]
	triple := strings.Repeat(string(q), 3)
	defer func() {
		if s.i > len(s.s) {
			s.i = len(s.s)
		}
	}()
	if strings.HasPrefix(s.s[s.i:], triple) {
		s.i += 3
		for s.i < len(s.s) {
			if q == '"' && s.s[s.i] == '\\' {
				s.i += 2
				continue
			}
			if strings.HasPrefix(s.s[s.i:], triple) {
				s.i += 3
				// Up to two more quotes belong to the content.
				for extra := 0; extra < 2 && s.i < len(s.s) && s.s[s.i] == q; extra++ {
					s.i++
				}
				return
			}
			s.i++
		}
		return
	}
	s.lineString(q)
}

// lineString skips a one-line basic or literal string whose opening
// quote q is at s.i: past its closing quote, or to the line's end where
// it has none.
func (s *lineScanner) lineString(q byte) {
	s.i++
	for s.i < len(s.s) && s.s[s.i] != '\n' {
		c := s.s[s.i]
		if q == '"' && c == '\\' {
			s.i += 2
			continue
		}
		s.i++
		if c == q {
			return
		}
	}
	if s.i > len(s.s) {
		s.i = len(s.s)
	}
}
