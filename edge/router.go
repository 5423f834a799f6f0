package edge

import "strings"

// hostTable maps hostnames to values: exact names first, then the longest
// matching "*." wildcard. A wildcard covers any number of labels in front
// of its suffix ("*.acme.com" matches "a.acme.com" and "a.b.acme.com"), so
// that "longest wildcard wins" has a meaning.
type hostTable[V any] struct {
	exact map[string]V
	wild  map[string]V // keyed by the suffix with its leading dot: ".acme.com"
}

func newHostTable[V any]() hostTable[V] {
	return hostTable[V]{exact: map[string]V{}, wild: map[string]V{}}
}

// add registers a normalised hostname ("a.com" or "*.a.com").
func (t hostTable[V]) add(host string, v V) {
	if strings.HasPrefix(host, "*.") {
		t.wild[host[1:]] = v
		return
	}
	t.exact[host] = v
}

// lookup finds the value for a lowercase hostname without a port.
func (t hostTable[V]) lookup(host string) (V, bool) {
	if v, ok := t.exact[host]; ok {
		return v, true
	}
	if len(t.wild) > 0 {
		// Try ".b.acme.com", then ".acme.com", then ".com": longest first.
		for i := strings.IndexByte(host, '.'); i >= 0 && i < len(host)-1; {
			if v, ok := t.wild[host[i:]]; ok {
				return v, true
			}
			j := strings.IndexByte(host[i+1:], '.')
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	var zero V
	return zero, false
}

// pathTable maps base paths to routes and finds the longest base path
// that matches a request path on a segment boundary.
type pathTable[V any] struct {
	byPath map[string]V
	maxLen int // of the longest base path in byPath
	// lens has bit n set when a base path of n bytes is in byPath: match
	// looks up only prefixes of such a length, so that one long base
	// path (an environment's file may name one of thousands of bytes)
	// does not make every request of the group hash each of its
	// prefixes up to that length.
	lens    []uint64
	root    V
	hasRoot bool
}

func newPathTable[V any]() pathTable[V] {
	return pathTable[V]{byPath: map[string]V{}}
}

// add registers a cleaned base path ("/" or "/a/b" without trailing slash).
func (t *pathTable[V]) add(base string, v V) {
	if base == "/" {
		t.root, t.hasRoot = v, true
		return
	}
	t.byPath[base] = v
	t.maxLen = max(t.maxLen, len(base))
	for len(t.lens) <= len(base)/64 {
		t.lens = append(t.lens, 0)
	}
	t.lens[len(base)/64] |= 1 << (len(base) % 64)
}

// match returns the route of the longest base path that equals path or is
// followed in it by "/": "/users" matches "/users" and "/users/7", never
// "/usersx". It costs one map lookup per path segment within the longest
// base path's length whose prefix is as long as some base path, and
// allocates nothing.
func (t *pathTable[V]) match(path string) (V, bool) {
	if len(t.byPath) > 0 {
		p := path
		if len(p) > t.maxLen {
			// No base path is longer: start at the last boundary
			// within reach, so that a long path costs no more than a
			// short one (each lookup hashes the whole prefix).
			p = p[:max(strings.LastIndexByte(p[:t.maxLen+1], '/'), 0)]
		}
		for len(p) > 1 {
			if t.lens[len(p)/64]&(1<<(len(p)%64)) != 0 {
				if v, ok := t.byPath[p]; ok {
					return v, true
				}
			}
			i := strings.LastIndexByte(p, '/')
			if i <= 0 {
				break
			}
			p = p[:i]
		}
	}
	if t.hasRoot {
		return t.root, true
	}
	var zero V
	return zero, false
}

// hostOnly lowercases a Host header value and strips its port, and a
// trailing dot. It allocates only when the value has upper-case letters.
func hostOnly(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}
