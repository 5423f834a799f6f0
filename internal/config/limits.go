package config

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/BurntSushi/toml"
)

// The TOML decoder recurses once per level of nesting and, for a key of n
// parts, builds every prefix of it as a string n times over: a few hundred
// KiB of nested arrays, or a few KiB of long dotted keys, make it use
// gigabytes and end in a fatal stack overflow that no recover catches. So
// every file is measured before the decoder sees it, and refused above
// these limits. Each is far above what an edged configuration needs (its
// deepest key, environment.rules.access_log.path, has 4 parts; its deepest
// value, nodes = [{ ... }], nests 2 levels).
const (
	// MaxFileSize bounds one configuration file. A file of 10,000 proxies
	// is about 1 MiB. Decoding and checking a file costs up to about 200
	// times its size in heap at its peak (BenchmarkDecodeAtLimits: a file
	// of nothing but "[[proxy]]" lines, each an object with four errors),
	// so this limit is what bounds one file's cost.
	MaxFileSize = 2 << 20
	// MaxTotalSize bounds all configuration files of one load together, so
	// that the cost of a load is bounded too, not only that of each file
	// (a directory of files each under MaxFileSize would otherwise add up
	// without end). It is 8 times a 10,000-proxy configuration.
	MaxTotalSize = 8 << 20
	// MaxFiles bounds how many configuration files one load reads: the
	// total size does not bound their number, and each file, empty or
	// not, costs a read, a decode, an entry in every generation's record
	// and in the watcher's rescan (100,000 empty files took edged check
	// 3 s). A 10,000-proxy configuration written one proxy per file and
	// environment still fits several times over.
	MaxFiles = 100000
	// MaxNesting bounds how deep arrays and inline tables nest.
	MaxNesting = 32
	// MaxKeyParts bounds the parts of a key as the decoder sees it: those of
	// its table header, of the keys of the inline tables around it, and its
	// own dotted parts ("[a.b]" then "c.d = 1" is a key of 4 parts).
	MaxKeyParts = 8
	// MaxKeyBytes bounds the length of such a key, counted as written
	// (quotes included).
	MaxKeyBytes = 128
)

// maxFiles is MaxFiles; a test lowers it rather than write 100,000 files.
var maxFiles = MaxFiles

// keyPath is the size of a key: its parts and its bytes as written.
type keyPath struct{ parts, bytes int }

func (k keyPath) plus(o keyPath) keyPath { return keyPath{k.parts + o.parts, k.bytes + o.bytes} }

// container is an array or inline table being scanned.
type container struct {
	// key is the key path the keys inside an inline table extend; for an
	// array, that of the key holding it (an inline table in it extends
	// that key, as the decoder does).
	key keyPath
	// last is the path of the last key written in this container, which
	// an inline table opened as its value extends.
	last keyPath
}

// checkLimits scans a TOML document once and returns the first line that
// breaks a limit (MaxNesting, MaxKeyParts, MaxKeyBytes) and what it
// breaks; 0 when none does. It understands just enough TOML for that:
// strings of the four kinds (brackets and dots inside them do not count),
// comments, table headers, dotted keys and the brackets of arrays and
// inline tables. It does not validate: on a document the decoder rejects it
// may stop early or say nothing, which is safe because the decoder stops at
// its first error and acts on nothing after it. What it must never do is
// see less nesting or shorter keys than the decoder would before that
// error, so it counts every bracket outside strings, comments and table
// headers, a '[' first on a line at the top level opens a header as it
// does for the decoder (after a carriage return too), and strings end
// exactly where the decoder ends them. It allocates nothing until it finds
// a limit broken.
func checkLimits(data []byte) (line int, msg string) {
	var (
		stack [MaxNesting]container
		depth int
		top   container // top level: key is the current table header
		run   keyPath   // the dotted key being read
		// inRun: run holds at least one part; afterDot: and a '.' followed it.
		inRun, afterDot bool
		// lineStart: only blanks since the last newline; a '[' there, at
		// depth 0, opens a table header.
		lineStart = true
		header    bool // reading the name of a table header
		// headerArray: that header is an array of tables' ("[[a]]").
		headerArray bool
		i           int
	)
	line = 1
	// The decoder skips a byte order mark before it reads: so does the
	// scan, or a '[' right after the mark would not open a header for it.
	data = data[bomLen(data):]
	cur := func() *container {
		if depth == 0 {
			return &top
		}
		return &stack[depth-1]
	}
	resetRun := func() { run, inRun, afterDot = keyPath{}, false, false }
	// part adds one part of n bytes to the run: after a '.', to the same
	// key; otherwise it starts another.
	part := func(n int) {
		if !afterDot {
			run = keyPath{}
		}
		run.parts++
		run.bytes += n
		inRun, afterDot = true, false
	}
	checkKey := func(k keyPath) string {
		switch {
		case k.parts > MaxKeyParts:
			return fmt.Sprintf("key has %d parts, more than %d (counting those of its table header and of the inline tables around it)", k.parts, MaxKeyParts)
		case k.bytes > MaxKeyBytes:
			return fmt.Sprintf("key is %d bytes long, more than %d (counting those of its table header and of the inline tables around it)", k.bytes, MaxKeyBytes)
		}
		return ""
	}
	for i < len(data) {
		c := data[i]
		switch c {
		case ' ', '\t':
			i++
			continue
		case '\n':
			line++
			lineStart = true
			resetRun()
			if header {
				return 0, "" // the decoder rejects a newline in a table name
			}
			i++
			continue
		case '\r':
			// A line break to the decoder (a bare one is an error, but
			// only after a table header that follows it is read).
			lineStart = true
			resetRun()
			if header {
				return 0, ""
			}
			i++
			continue
		case '#':
			// A comment ends at a newline or a carriage return, like the
			// decoder's.
			for i < len(data) && data[i] != '\n' && data[i] != '\r' {
				i++
			}
			resetRun()
			if header {
				return 0, ""
			}
			continue
		case '"', '\'':
			start := i
			var ok bool
			i, line, ok = skipString(data, i, line)
			if !ok {
				return 0, "" // the decoder fails in this string and reads no further
			}
			part(i - start)
			lineStart = false
			continue
		}
		wasLineStart := lineStart
		lineStart = false
		switch c {
		case '.':
			if inRun {
				afterDot = true
			} else {
				resetRun()
			}
			i++
		case '=':
			if header {
				return 0, ""
			}
			k := cur().key.plus(run)
			if m := checkKey(k); m != "" {
				return line, m
			}
			cur().last = k
			resetRun()
			i++
		case '[':
			if depth == 0 && wasLineStart && !header {
				header, headerArray = true, false
				i++
				if i < len(data) && data[i] == '[' {
					headerArray = true
					i++
				}
				resetRun()
				continue
			}
			if header {
				return 0, ""
			}
			if depth == MaxNesting {
				return line, fmt.Sprintf("nested deeper than %d levels (arrays and inline tables)", MaxNesting)
			}
			p := cur()
			stack[depth] = container{key: p.key, last: p.last}
			depth++
			resetRun()
			i++
		case '{':
			if header {
				return 0, ""
			}
			if depth == MaxNesting {
				return line, fmt.Sprintf("nested deeper than %d levels (arrays and inline tables)", MaxNesting)
			}
			stack[depth] = container{key: cur().last}
			depth++
			resetRun()
			i++
		case ']':
			if header {
				if m := checkKey(run); m != "" {
					return line, "table " + m[len("key "):]
				}
				top = container{key: run}
				header = false
				i++
				if headerArray && i < len(data) && data[i] == ']' {
					i++
				}
				resetRun()
				continue
			}
			fallthrough
		case '}':
			if depth > 0 {
				depth--
			}
			resetRun()
			i++
		case ',':
			resetRun()
			i++
		default:
			// A bare key, or a value (number, date, boolean): one part.
			start := i
			for i < len(data) && !isDelim(data[i]) {
				i++
			}
			part(i - start)
		}
	}
	return 0, ""
}

// isDelim reports whether c ends a bare key or a bare value.
func isDelim(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '.', '=', ',', '[', ']', '{', '}', '"', '\'', '#':
		return true
	}
	return false
}

// skipString skips the string starting at data[i] (a quote) the way the
// decoder's lexer ends it, and returns the index after it and the line it
// ends on. A single-line string ends at its closing quote (a basic one
// skips the byte a backslash escapes); a multi-line one ends after the last
// of 3 to 5 quotes in a row (6 after an escaped backslash in a basic one).
// ok is false where the decoder fails inside the string: no end, a newline
// or carriage return in a single-line string, 6 or more quotes in a row in
// a multi-line one (but for those 6).
func skipString(data []byte, i, line int) (end, endLine int, ok bool) {
	q := data[i]
	basic := q == '"'
	if i+2 < len(data) && data[i+1] == q && data[i+2] == q {
		for i += 3; i < len(data); {
			switch c := data[i]; {
			case c == '\\' && basic:
				if i+1 < len(data) && data[i+1] == '\n' {
					line++
				}
				i += 2
			case c == '\n':
				line++
				i++
			case c == q:
				// The decoder's check for six quotes in a row passes
				// six that follow an escaped backslash ("""\\""""""):
				// three of content, then the end. It reads on after
				// them, so the scan must too.
				escaped := basic && data[i-1] == '\\'
				n := 0
				for i < len(data) && data[i] == q {
					i++
					n++
				}
				if n > 6 || n == 6 && !escaped {
					return i, line, false
				}
				if n >= 3 {
					return i, line, true
				}
			default:
				i++
			}
		}
		return i, line, false
	}
	for i++; i < len(data); i++ {
		switch c := data[i]; {
		case c == q:
			return i + 1, line, true
		case c == '\n' || c == '\r':
			return i, line, false
		case c == '\\' && basic:
			if i+1 < len(data) && (data[i+1] == '\n' || data[i+1] == '\r') {
				return i, line, false
			}
			i++
		}
	}
	return i, line, false
}

// limitError is a document over one of the limits above, at line (0 when
// it is about the whole file).
type limitError struct {
	line int
	msg  string
}

func (e *limitError) Error() string { return e.msg }

// decodeTOML decodes a document after checking it against the limits, so
// that no content can crash or exhaust the process. A limit broken is a
// *limitError.
func decodeTOML(data []byte, v any) error {
	if len(data) > MaxFileSize {
		return &limitError{msg: fmt.Sprintf("file is larger than the %d bytes (%s) allowed; split it into several files",
			MaxFileSize, sizeName(MaxFileSize))}
	}
	if line, msg := checkLimits(data); msg != "" {
		return &limitError{line: line, msg: msg}
	}
	_, err := toml.Decode(string(data), v)
	return err
}

// DecodeTOML decodes a document read from path as the loader decodes a
// configuration file, within the same limits: whatever else reads such a
// file (edged promote reading a table back to copy it) must not let its
// content crash or exhaust the process either. A limit broken is an error
// naming path and, where known, the line.
func DecodeTOML(path string, data []byte, v any) error {
	err := decodeTOML(data, v)
	var le *limitError
	if errors.As(err, &le) {
		return fmt.Errorf("%s: %s", Pos{File: path, Line: le.line}, le.msg)
	}
	return err
}

// bomLen is the length of the byte order mark at the start of data that
// the decoder skips (UTF-8's, or either of UTF-16's, which some tools write
// before UTF-8 text): 0 when there is none. The decoder skips one mark
// only.
func bomLen(data []byte) int {
	switch {
	case bytes.HasPrefix(data, []byte("\xff\xfe")), bytes.HasPrefix(data, []byte("\xfe\xff")):
		return 2
	case bytes.HasPrefix(data, []byte("\xef\xbb\xbf")):
		return 3
	}
	return 0
}
