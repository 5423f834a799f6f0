package upstream

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
)

// balancer picks a usable node not in tried, or nil. Implementations
// must not allocate. all is panic mode (Upstream.Pick): the passive
// check's ejections are ignored.
type balancer interface {
	pick(r *http.Request, fields []Field, tried []*Node, all bool) *Node
}

func newBalancer(balance, hashOn string, nodes []*Node) (balancer, error) {
	switch balance {
	case "", "round_robin":
		return newRoundRobin(nodes), nil
	case "least_request":
		return &leastRequest{nodes: nodes}, nil
	case "hash":
		return newHash(hashOn, nodes)
	}
	return nil, fmt.Errorf("balance %q: want round_robin, least_request or hash", balance)
}

// usable: not tried yet, and healthy; in panic mode (all), not down by
// the active check, ejected or not.
func usable(n *Node, tried []*Node, all bool) bool {
	for _, t := range tried {
		if t == n {
			return false
		}
	}
	if all {
		return !n.down.Load()
	}
	return n.Healthy()
}

// roundRobin is nginx's smooth weighted round robin: every pick adds each
// candidate's weight to its current score, takes the highest score and
// subtracts the total weight from it. Over a cycle of sum(weights) picks
// every node gets exactly its weight, interleaved (5,1,1 gives a a b a c a a,
// not a a a a a b c).
type roundRobin struct {
	nodes []*Node
	mu    sync.Mutex
	cur   []int
}

func newRoundRobin(nodes []*Node) *roundRobin {
	return &roundRobin{nodes: nodes, cur: make([]int, len(nodes))}
}

func (b *roundRobin) pick(_ *http.Request, _ []Field, tried []*Node, all bool) *Node {
	if len(b.nodes) == 1 {
		if n := b.nodes[0]; usable(n, tried, all) {
			return n
		}
		return nil
	}
	b.mu.Lock()
	best, total := -1, 0
	for i, n := range b.nodes {
		if !usable(n, tried, all) {
			continue
		}
		b.cur[i] += n.weight
		total += n.weight
		if best < 0 || b.cur[i] > b.cur[best] {
			best = i
		}
	}
	if best < 0 {
		b.mu.Unlock()
		return nil
	}
	b.cur[best] -= total
	b.mu.Unlock()
	return b.nodes[best]
}

// continueFrom starts b's rotation where prev's is, when both rotate
// over the same nodes (URL and weight, in the same order); otherwise b
// starts afresh. b must not serve yet; prev may.
func (b *roundRobin) continueFrom(prev *roundRobin) {
	if len(prev.nodes) != len(b.nodes) {
		return
	}
	for i, n := range b.nodes {
		if p := prev.nodes[i]; p.url != n.url || p.weight != n.weight {
			return
		}
	}
	prev.mu.Lock()
	copy(b.cur, prev.cur)
	prev.mu.Unlock()
}

// rotation is b's round robin: its own, or the one a hash balancer uses
// for requests without a key; nil for least_request.
func rotation(b balancer) *roundRobin {
	switch b := b.(type) {
	case *roundRobin:
		return b
	case *hash:
		return b.fallback
	}
	return nil
}

// leastRequest picks the node with the fewest requests in flight relative
// to its weight (in/w compared as in_a*w_b < in_b*w_a). Ties are broken at
// random in proportion to weight (weighted reservoir sampling), so idle
// nodes share the load by weight instead of the first one taking it all.
type leastRequest struct {
	nodes []*Node
}

func (b *leastRequest) pick(_ *http.Request, _ []Field, tried []*Node, all bool) *Node {
	var best *Node
	var bestIn int64
	tieWeight := 0
	for _, n := range b.nodes {
		if !usable(n, tried, all) {
			continue
		}
		in := n.inFlight.Load()
		w := int64(n.weight)
		switch {
		case best == nil:
		case in*int64(best.weight) < bestIn*w: // strictly fewer per weight
		case in*int64(best.weight) == bestIn*w:
			tieWeight += n.weight
			if rand.IntN(tieWeight) < n.weight {
				best, bestIn = n, in
			}
			continue
		default:
			continue
		}
		best, bestIn, tieWeight = n, in, n.weight
	}
	return best
}

// hash is weighted rendezvous (highest random weight) hashing: each node
// scores hash(key, node); the best usable score wins. The mapping is
// stable across processes and reloads (it depends only on the key and the
// node URLs), needs no ring, and a node going away or coming back moves
// only its own keys. Requests without a key go round robin.
type hash struct {
	kind     hashKind
	name     string // canonical header name or cookie name
	nodes    []*Node
	weighted bool // weights differ: use w / -ln(u) scores
	fallback *roundRobin
}

type hashKind uint8

const (
	hashHeader hashKind = iota
	hashCookie
	hashClientIP
	// hashHost is hash_on "header:Host": the request's Host, which is
	// in no header map (net/http and edged's servers keep it in
	// http.Request.Host), as nginx's $host: without its port or a
	// trailing dot, in any case (hashed lower-cased).
	hashHost
)

func newHash(on string, nodes []*Node) (*hash, error) {
	h := &hash{nodes: nodes, fallback: newRoundRobin(nodes)}
	kind, name, _ := strings.Cut(on, ":")
	switch {
	case kind == "header" && name != "":
		h.kind, h.name = hashHeader, textproto.CanonicalMIMEHeaderKey(name)
		if h.name == "Host" {
			h.kind = hashHost
		}
	case kind == "cookie" && name != "":
		h.kind, h.name = hashCookie, name
	case on == "client_ip":
		h.kind = hashClientIP
	default:
		return nil, fmt.Errorf("hash_on %q: want header:NAME, cookie:NAME or client_ip", on)
	}
	for _, n := range nodes {
		if n.weight != nodes[0].weight {
			h.weighted = true
		}
	}
	return h, nil
}

func (b *hash) pick(r *http.Request, fields []Field, tried []*Node, all bool) *Node {
	key, ok := b.key(r, fields)
	if !ok {
		return b.fallback.pick(r, fields, tried, all)
	}
	// A host is hashed in any case; a header's or cookie's value as sent.
	kh := fnv64aFold(key, b.kind == hashHost)
	var best *Node
	var bestScore float64
	var bestRaw uint64
	for _, n := range b.nodes {
		if !usable(n, tried, all) {
			continue
		}
		raw := mix64(kh ^ n.seed)
		if !b.weighted {
			if best == nil || raw > bestRaw {
				best, bestRaw = n, raw
			}
			continue
		}
		// u uniform in (0,1); w/-ln(u) is the weighted HRW score.
		u := (float64(raw>>11) + 0.5) / (1 << 53)
		score := float64(n.weight) / -math.Log(u)
		if best == nil || score > bestScore {
			best, bestScore = n, score
		}
	}
	return best
}

// key extracts the hash key without allocating. A header is looked for
// among fields first, then in r's header: the request as it goes to the
// node (Request.Fields, Request.Header).
func (b *hash) key(r *http.Request, fields []Field) (string, bool) {
	if r == nil {
		return "", false
	}
	switch b.kind {
	case hashHeader:
		for _, f := range fields {
			if f.Name == b.name {
				return f.Value, f.Value != ""
			}
		}
		if v := r.Header[b.name]; len(v) > 0 && v[0] != "" {
			return v[0], true
		}
	case hashCookie:
		for _, line := range r.Header["Cookie"] {
			if v, ok := cookieValue(line, b.name); ok {
				return v, true
			}
		}
	case hashClientIP:
		if ip := hostOnly(r.RemoteAddr); ip != "" {
			return ip, true
		}
	case hashHost:
		// A trailing dot names the same host (nginx's $host drops it).
		if host := strings.TrimSuffix(hostOnly(r.Host), "."); host != "" {
			return host, true
		}
	}
	return "", false
}

// cookieValue finds name=value in one Cookie header line.
func cookieValue(line, name string) (string, bool) {
	for line != "" {
		var part string
		part, line, _ = strings.Cut(line, ";")
		part = strings.TrimSpace(part)
		k, v, ok := strings.Cut(part, "=")
		if !ok || k != name {
			continue
		}
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		if v == "" {
			return "", false
		}
		return v, true
	}
	return "", false
}

// hostOnly strips the port from "ip:port" or "[ipv6]:port".
func hostOnly(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 && strings.IndexByte(addr[i:], ']') < 0 {
		addr = addr[:i]
	}
	return strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
}

// fnv64a is FNV-1a over a string, without converting it to bytes.
func fnv64a(s string) uint64 { return fnv64aFold(s, false) }

// fnv64aFold is fnv64a, over s with its ASCII letters lower-cased when
// lower is set.
func fnv64aFold(s string, lower bool) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if lower && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// mix64 is splitmix64's finalizer: it spreads FNV's weak low bits so that
// key ^ seed scores are independent per node.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
