package edge

import (
	"bytes"
	"net/url"
	"strings"
)

// requestPath is the path a request is routed and forwarded on: the
// decoded path with its dot segments resolved, and its escaped form.
type requestPath struct {
	// decoded is matched against base paths.
	decoded string
	// escaped is forwarded; "" means the request's own escaping
	// (clientEscaped), kept when nothing needed resolving.
	escaped string
	// routed is decoded as the backends that read it most loosely do
	// (looseSegments); "" when decoded has no ";" or "\".
	routed string
}

// routedOn is what base paths are matched against: the decoded path,
// without the parameters of its segments, "\" separating them too.
func (p *requestPath) routedOn() string {
	if p.routed != "" {
		return p.routed
	}
	return p.decoded
}

// baseEnd is the length of the start of p.decoded that the base path
// base, matched on p.routedOn(), stands for: up to the end of its last
// segment's name, whose parameters go on with the rest.
func (p *requestPath) baseEnd(base string) int {
	if p.routed == "" {
		return len(base)
	}
	d := p.decoded
	n := strings.Count(base, "/") // segments of base ("/" is not matched so)
	for i := 0; i < len(d); {
		name, end := looseSegment(d, i)
		if name != "" {
			if n--; n == 0 {
				return i + 1 + len(name)
			}
		}
		i = end
	}
	return len(d)
}

// looseSegment is the name of the segment of p that starts at i (a "/"
// or "\") without its parameters, and where the segment ends.
func looseSegment(p string, i int) (name string, end int) {
	end = len(p)
	if j := strings.IndexAny(p[i+1:], `/\`); j >= 0 {
		end = i + 1 + j
	}
	name = p[i+1 : end]
	if k := strings.IndexByte(name, ';'); k >= 0 {
		name = name[:k]
	}
	return name, end
}

// normalizePath merges runs of "/" and resolves the "." and ".." segments
// of a request path like nginx does (merge_slashes, on by default), on
// the decoded path, so "%2e%2e", "..%2F" and "%2F%2F" are covered as well
// as "..". A run of "/" is one: a backend merges it (or redirects to the
// clean path), so "/api//internal" is routed as the "/api/internal" the
// backend reads, not to the /api proxy, whose backend would then serve
// what the more specific base path shadows. why says why the path is
// refused ("" when it is not): it holds "%00", climbs above "/", or a dot
// segment has path parameters or a backslash beside it. A path without
// dot segments or "//" (the common case) is returned as it is, with no
// allocation; one without dot segments keeps its escaping (see
// mergeEscapedSlashes). A path with a ";" or "\" is routed as the
// backends that read it most loosely do (looseSegments), which costs it
// one allocation.
func normalizePath(u *url.URL) (p requestPath, why string) {
	p, why = resolvePath(u)
	if why == "" && strings.HasPrefix(p.decoded, "/") && (strings.IndexByte(p.decoded, ';') >= 0 || strings.IndexByte(p.decoded, '\\') >= 0) {
		p.routed = looseSegments(p.decoded)
	}
	return p, why
}

// looseSegments is p, an absolute path with no dot segment or run of
// "/", as the backends that read it most loosely do: each segment
// without its parameters (";" to the segment's end), as Java servers
// (Tomcat, Jetty, Spring) drop them, "\" separating segments as "/"
// does, as IIS and ASP.NET read it, and a segment left empty by either
// dropped but at the end ("/api;v=2/;x/internal;y" and "/api\internal"
// are "/api/internal", "/api/;x" is "/api/"). Routed on it,
// "/api/internal;x" and "/api/internal\x" go to the base path
// "/api/internal", as to such a backend they are under that path, never
// to "/api", whose backend would read "/v1/internal": what the more
// specific base path is there to shadow. A ";" or "\" that was
// escaped ("%3B", "%5C") counts too, as a "%2F" is a "/" to the
// matching.
func looseSegments(p string) string {
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); {
		name, end := looseSegment(p, i)
		if name != "" || end == len(p) {
			b = append(b, '/')
			b = append(b, name...)
		}
		i = end
	}
	return string(b)
}

// resolvePath is normalizePath but for the path routed on.
func resolvePath(u *url.URL) (p requestPath, why string) {
	if u.Path == "" {
		// An absolute-form target without a path ("GET https://host",
		// "https://host?q"): the path is "/" (RFC 9110 4.2.3), as it is
		// in origin-form (RFC 9112 3.2.1). Forwarded as "", it was the
		// target path alone, "/v1" where "GET /" gets "/v1/".
		return requestPath{decoded: "/", escaped: "/"}, ""
	}
	if strings.IndexByte(u.Path, 0) >= 0 {
		// Refused as nginx does: a backend that hands the path to C (a
		// file name, a CGI script) reads it cut short there,
		// "/x.php%00.jpg" as "/x.php".
		return requestPath{}, "holds an encoded NUL byte (%00)"
	}
	dots, why := dotSegments(u.Path)
	if why != "" {
		return requestPath{}, why
	}
	slashes := strings.Contains(u.Path, "//")
	if !dots && !slashes {
		return requestPath{decoded: u.Path}, ""
	}
	if !dots {
		// Merged on the escaped path too, rather than escaped again from
		// the decoded one: what the client escaped ("%2F" inside a
		// segment, "%3B") reaches the backend as it would without the
		// "//", and means what it did (one segment "group%2Fproject").
		return requestPath{decoded: mergeSlashes(u.Path), escaped: mergeEscapedSlashes(clientEscaped(u))}, ""
	}
	clean := u.Path
	if slashes {
		clean = mergeSlashes(clean)
	}
	if dots {
		var ok bool
		if clean, ok = removeDotSegments(clean); !ok {
			return requestPath{}, "climbs above the root"
		}
	}
	return requestPath{decoded: clean, escaped: (&url.URL{Path: clean}).EscapedPath()}, ""
}

// clientEscaped is u's path as the client escaped it. url.URL.EscapedPath
// gives that only while the client's text is what net/url would write:
// beside a byte it would escape (a raw '|', '{', '"' or '^', which a
// request line may hold), it escapes the decoded path afresh, and a
// "%2F" inside a segment becomes a "/" between two. RawPath is the
// client's text whenever it differs from EscapedPath's (both servers
// parse the target with net/url, or leave RawPath empty for a path that
// needs no escaping, originFormFast).
func clientEscaped(u *url.URL) string {
	if u.RawPath != "" {
		return u.RawPath
	}
	return u.EscapedPath()
}

// dotSegments reports whether p has a "." or ".." segment, or why one
// makes p refused: it has path parameters (".;x", "..;x"), or a
// backslash beside it ("..\", "\..").
func dotSegments(p string) (dots bool, why string) {
	for i := 0; i < len(p); {
		j := strings.IndexByte(p[i:], '.')
		if j < 0 {
			break
		}
		i += j
		if i == 0 || p[i-1] == '/' || p[i-1] == '\\' {
			k := i + 1
			if k < len(p) && p[k] == '.' {
				k++
			}
			var next byte // 0 at the end
			if k < len(p) {
				next = p[k]
			}
			switch {
			case next == ';':
				// Java servers (Tomcat, Jetty, Spring) drop a
				// segment's parameters before they resolve it:
				// "/public/..;/admin" is "/admin" to them, out of
				// the proxy's target path, and a name to everyone
				// else. Jakarta Servlet 6.0 (3.5.2) rejects it as
				// suspicious; so does edged, which cannot tell them
				// apart.
				return dots, "has a \".\" or \"..\" segment with parameters (\"..;\")"
			case next != 0 && next != '/' && next != '\\':
			case i > 0 && p[i-1] == '\\' || next == '\\':
				// IIS and ASP.NET, and some frameworks, read "\"
				// (sent as is or as "%5C") as "/": "/public/..\admin"
				// is "/admin" to them, out of the proxy's target
				// path. nginx on Windows resolves it so too.
				return dots, "has a \".\" or \"..\" segment next to a backslash (\"..\\\", \"%5C\")"
			default:
				dots = true
			}
		}
		i++
	}
	return dots, ""
}

// mergeEscapedSlashes turns each run of "/" and "%2F" in esc, an escaped
// path, into one: the "/" of the run when it has one, else its first
// "%2F". What it returns decodes to mergeSlashes of what esc decodes to,
// as appendOutgoingURI needs (escapedLen); every other escape is kept.
func mergeEscapedSlashes(esc string) string {
	b := make([]byte, 0, len(esc))
	run := -1 // where the current run's slash is in b, or -1 outside a run
	for i := 0; i < len(esc); {
		n := 0 // the length of a slash at i: "/" or "%2F"
		switch {
		case esc[i] == '/':
			n = 1
		case esc[i] == '%' && i+2 < len(esc) && esc[i+1] == '2' && (esc[i+2] == 'F' || esc[i+2] == 'f'):
			n = 3
		}
		switch {
		case n == 0:
			b = append(b, esc[i])
			run = -1
			i++
			continue
		case run < 0:
			run = len(b)
			b = append(b, esc[i:i+n]...)
		case n == 1 && b[run] == '%':
			// The run's "/" rather than its "%2F": the client
			// separated segments there.
			b = append(b[:run], '/')
		}
		i += n
	}
	return string(b)
}

// mergeSlashes turns each run of "/" in p into one.
func mergeSlashes(p string) string {
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b = append(b, p[i])
	}
	return string(b)
}

// removeDotSegments resolves "." and ".." in an absolute path (RFC 3986
// 5.2.4). It reports false when a ".." would climb above the root, or the
// path is not absolute.
func removeDotSegments(p string) (string, bool) {
	if p == "" || p[0] != '/' {
		return "", false
	}
	out := make([]byte, 0, len(p))
	for i := 0; i < len(p); {
		end := len(p)
		if j := strings.IndexByte(p[i+1:], '/'); j >= 0 {
			end = i + 1 + j
		}
		last := end == len(p)
		switch seg := p[i+1 : end]; seg {
		case ".":
			if last {
				out = append(out, '/')
			}
		case "..":
			k := bytes.LastIndexByte(out, '/')
			if k < 0 {
				return "", false
			}
			out = out[:k]
			if last {
				out = append(out, '/')
			}
		default:
			out = append(out, '/')
			out = append(out, seg...)
		}
		i = end
	}
	if len(out) == 0 {
		out = append(out, '/')
	}
	return string(out), true
}
