package upstream

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// balancedUpstream has one node per weight, on ports that are never
// dialed.
func balancedUpstream(tb testing.TB, balance, hashOn string, weights ...int) *Upstream {
	tb.Helper()
	cfg := Config{Balance: balance, HashOn: hashOn}
	for i, w := range weights {
		cfg.Nodes = append(cfg.Nodes, NodeConfig{Scheme: "http", Host: "10.0.0." + strconv.Itoa(i+1) + ":80", Weight: w})
	}
	return newUpstream(tb, cfg)
}

func counts(u *Upstream, picks int, r func(int) *http.Request, tried []*Node) map[*Node]int {
	got := map[*Node]int{}
	for i := range picks {
		got[u.Pick(r(i), nil, tried)]++
	}
	return got
}

func plain(int) *http.Request { return &http.Request{Header: http.Header{}} }

func TestRoundRobinWeighted(t *testing.T) {
	u := balancedUpstream(t, "round_robin", "", 1, 2, 3)
	a, b, c := u.Nodes()[0], u.Nodes()[1], u.Nodes()[2]

	// Every cycle of sum(weights) picks gives each node exactly its
	// weight, interleaved (smooth): never three of c in a row.
	var seq strings.Builder
	for cycle := range 100 {
		got := counts(u, 6, plain, nil)
		require.Equal(t, map[*Node]int{a: 1, b: 2, c: 3}, got, "cycle %d", cycle)
	}
	names := map[*Node]string{a: "a", b: "b", c: "c"}
	for range 6 {
		seq.WriteString(names[u.Pick(nil, nil, nil)])
	}
	assert.Equal(t, "cbacbc", seq.String(), "nginx's smooth order for weights 1,2,3")

	t.Run("skips tried and unhealthy", func(t *testing.T) {
		got := counts(u, 50, plain, []*Node{c})
		assert.Equal(t, map[*Node]int{a: 17, b: 33}, withinOne(got, map[*Node]int{a: 17, b: 33}))
		b.down.Store(true)
		defer b.down.Store(false)
		got = counts(u, 10, plain, []*Node{c})
		assert.Equal(t, map[*Node]int{a: 10}, got)
		assert.Nil(t, u.Pick(nil, nil, []*Node{a, c}))
	})
	t.Run("single node", func(t *testing.T) {
		u := balancedUpstream(t, "", "", 1)
		n := u.Nodes()[0]
		assert.Equal(t, n, u.Pick(nil, nil, nil))
		assert.Nil(t, u.Pick(nil, nil, []*Node{n}))
		n.down.Store(true)
		assert.Nil(t, u.Pick(nil, nil, nil))
	})
}

// withinOne returns want when got is within ±1 of it per node, else got.
func withinOne(got, want map[*Node]int) map[*Node]int {
	if len(got) != len(want) {
		return got
	}
	for n, w := range want {
		if d := got[n] - w; d < -1 || d > 1 {
			return got
		}
	}
	return want
}

func TestLeastRequest(t *testing.T) {
	u := balancedUpstream(t, "least_request", "", 1, 1, 1)
	a, b, c := u.Nodes()[0], u.Nodes()[1], u.Nodes()[2]
	a.inFlight.Store(3)
	b.inFlight.Store(1)
	c.inFlight.Store(2)
	for range 20 {
		require.Equal(t, b, u.Pick(nil, nil, nil), "the idlest node")
	}
	assert.Equal(t, c, u.Pick(nil, nil, []*Node{b}))
	c.down.Store(true)
	assert.Equal(t, a, u.Pick(nil, nil, []*Node{b}))
	assert.Nil(t, u.Pick(nil, nil, []*Node{a, b}))
	c.down.Store(false)

	t.Run("weight-aware", func(t *testing.T) {
		u := balancedUpstream(t, "least_request", "", 3, 1)
		heavy, light := u.Nodes()[0], u.Nodes()[1]
		heavy.inFlight.Store(2) // 2/3 per weight
		light.inFlight.Store(1) // 1/1
		assert.Equal(t, heavy, u.Pick(nil, nil, nil))
		heavy.inFlight.Store(4) // 4/3
		assert.Equal(t, light, u.Pick(nil, nil, nil))
	})
	t.Run("ties broken fairly by weight", func(t *testing.T) {
		u := balancedUpstream(t, "least_request", "", 1, 1, 2)
		got := counts(u, 4000, plain, nil)
		n := u.Nodes()
		// expected 1000, 1000, 2000; the bounds are > 10 sigma wide
		assert.InDelta(t, 1000, got[n[0]], 250)
		assert.InDelta(t, 1000, got[n[1]], 250)
		assert.InDelta(t, 2000, got[n[2]], 300)
	})
}

func keyed(header string) func(int) *http.Request {
	return func(i int) *http.Request {
		return &http.Request{Header: http.Header{header: {"user-" + strconv.Itoa(i)}}}
	}
}

func TestHashStableAndMinimalRemap(t *testing.T) {
	for _, weights := range [][]int{{1, 1, 1, 1}, {1, 2, 3, 4}} {
		t.Run("weights "+intsString(weights), func(t *testing.T) {
			u := balancedUpstream(t, "hash", "header:x-user", weights...)
			req := keyed("X-User")
			const keys = 4000
			before := make([]*Node, keys)
			share := map[*Node]int{}
			for i := range keys {
				before[i] = u.Pick(req(i), nil, nil)
				share[before[i]]++
				require.Equal(t, before[i], u.Pick(req(i), nil, nil), "stable for key %d", i)
			}
			total := 0
			for _, w := range weights {
				total += w
			}
			for i, n := range u.Nodes() {
				want := keys * weights[i] / total
				assert.InDelta(t, want, share[n], float64(want)/4+50, "share of node %d", i)
			}

			// A second Upstream with the same nodes maps keys the same
			// way (another edged instance, or after a reload).
			u2 := balancedUpstream(t, "hash", "header:X-User", weights...)
			for i := range 200 {
				require.Equal(t, before[i].URL(), u2.Pick(req(i), nil, nil).URL())
			}

			gone := u.Nodes()[1]
			gone.down.Store(true)
			moved := 0
			for i := range keys {
				got := u.Pick(req(i), nil, nil)
				require.NotEqual(t, gone, got)
				if before[i] != gone {
					require.Equal(t, before[i], got, "key %d of a healthy node must stay", i)
				} else {
					moved++
				}
			}
			assert.Equal(t, share[gone], moved)
			gone.down.Store(false)
			for i := range keys {
				require.Equal(t, before[i], u.Pick(req(i), nil, nil), "keys come back")
			}

			// tried works like an unhealthy node for one request.
			for i := range 200 {
				got := u.Pick(req(i), nil, []*Node{before[i]})
				require.NotEqual(t, before[i], got)
			}
		})
	}
}

func intsString(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func TestHashKeys(t *testing.T) {
	t.Run("cookie", func(t *testing.T) {
		u := balancedUpstream(t, "hash", "cookie:session", 1, 1, 1, 1)
		r := func(v string) *http.Request {
			return &http.Request{Header: http.Header{"Cookie": {"a=1; session=" + v + "; b=2"}}}
		}
		first := u.Pick(r("s1"), nil, nil)
		for range 20 {
			require.Equal(t, first, u.Pick(r("s1"), nil, nil))
		}
		quoted := &http.Request{Header: http.Header{"Cookie": {"x=y", `session="s1"`}}}
		assert.Equal(t, first, u.Pick(quoted, nil, nil), "second Cookie line, quoted value")
		seen := map[*Node]bool{}
		for i := range 100 {
			seen[u.Pick(r(strconv.Itoa(i)), nil, nil)] = true
		}
		assert.Len(t, seen, 4)
	})
	t.Run("client_ip", func(t *testing.T) {
		u := balancedUpstream(t, "hash", "client_ip", 1, 1, 1, 1)
		r := func(addr string) *http.Request { return &http.Request{RemoteAddr: addr} }
		assert.Equal(t, u.Pick(r("192.0.2.7:1111"), nil, nil), u.Pick(r("192.0.2.7:2222"), nil, nil), "the port does not matter")
		assert.Equal(t, u.Pick(r("[2001:db8::1]:1111"), nil, nil), u.Pick(r("[2001:db8::1]:2222"), nil, nil))
		assert.Equal(t, "2001:db8::1", hostOnly("[2001:db8::1]:443"))
		assert.Equal(t, "192.0.2.7", hostOnly("192.0.2.7:443"))
		assert.Equal(t, "192.0.2.7", hostOnly("192.0.2.7"))
	})
	t.Run("host", func(t *testing.T) {
		u := balancedUpstream(t, "hash", "header:host", 1, 1, 1, 1)
		r := func(host string) *http.Request { return &http.Request{Host: host, Header: http.Header{}} }
		first := u.Pick(r("api.acme.com"), nil, nil)
		for _, h := range []string{"api.acme.com", "API.Acme.COM", "api.acme.com:8443"} {
			assert.Same(t, first, u.Pick(r(h), nil, nil), "%s: as nginx's $host, in any case, without the port", h)
		}
		seen := map[*Node]bool{}
		for i := range 100 {
			seen[u.Pick(r("h"+strconv.Itoa(i)+".acme.com"), nil, nil)] = true
		}
		assert.Len(t, seen, 4)
	})
	t.Run("missing key goes round robin", func(t *testing.T) {
		u := balancedUpstream(t, "hash", "header:X-User", 1, 1, 1)
		got := counts(u, 300, plain, nil)
		for _, n := range u.Nodes() {
			assert.Equal(t, 100, got[n])
		}
	})
}

func TestPickAllocsNothing(t *testing.T) {
	for _, tc := range []struct{ balance, hashOn string }{
		{"round_robin", ""}, {"least_request", ""}, {"hash", "header:X-User"}, {"hash", "cookie:session"}, {"hash", "client_ip"}, {"hash", "header:Host"},
	} {
		u := balancedUpstream(t, tc.balance, tc.hashOn, 1, 2, 3)
		r := &http.Request{Host: "Api.Acme.com:8443", RemoteAddr: "192.0.2.1:5555", Header: http.Header{"X-User": {"alice"}, "Cookie": {"a=b; session=xyz"}}}
		tried := []*Node{u.Nodes()[0]}
		allocs := testing.AllocsPerRun(100, func() { u.Pick(r, nil, tried) })
		assert.Zero(t, allocs, "%s %s", tc.balance, tc.hashOn)
	}
}

func BenchmarkPick(b *testing.B) {
	for _, tc := range []struct{ name, balance, hashOn string }{
		{"round_robin", "round_robin", ""},
		{"least_request", "least_request", ""},
		{"hash_header", "hash", "header:X-User"},
		{"hash_cookie", "hash", "cookie:session"},
		{"hash_client_ip", "hash", "client_ip"},
		{"hash_weighted", "hash", "header:X-User"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			weights := []int{1, 1, 1, 1}
			if tc.name == "hash_weighted" || tc.balance == "round_robin" {
				weights = []int{1, 2, 3, 4}
			}
			u := balancedUpstream(b, tc.balance, tc.hashOn, weights...)
			r := &http.Request{RemoteAddr: "192.0.2.1:5555", Header: http.Header{
				"X-User": {"alice@example.com"},
				"Cookie": {"theme=dark; session=0123456789abcdef; lang=en"},
			}}
			b.ReportAllocs()
			for b.Loop() {
				if u.Pick(r, nil, nil) == nil {
					b.Fatal("no node")
				}
			}
		})
	}
}

// TestHashOnHostIgnoresATrailingDot: "api.acme.com." is the host
// "api.acme.com" (edged routes both to one group, and nginx's $host drops
// the dot), so hash_on = "header:Host" sends both to one node.
func TestHashOnHostIgnoresATrailingDot(t *testing.T) {
	u := balancedUpstream(t, "hash", "header:Host", 1, 1, 1, 1)
	r := func(host string) *http.Request { return &http.Request{Host: host, Header: http.Header{}} }
	differ := 0
	for i := range 100 {
		h := "h" + strconv.Itoa(i) + ".acme.com"
		want := u.Pick(r(h), nil, nil)
		for _, v := range []string{h + ".", strings.ToUpper(h) + ".", h + ".:443"} {
			if u.Pick(r(v), nil, nil) != want {
				differ++
			}
		}
	}
	assert.Zero(t, differ, "hosts sent with a trailing dot reaching another node than without, of 300")
}
