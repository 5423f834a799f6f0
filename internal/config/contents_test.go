package config

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// undefinedUpstreamLoader is a loader holding n upstreams of environment
// test and n+1 proxies of uat naming upstreams uat lacks, the last one
// test's last upstream.
func undefinedUpstreamLoader(n int) (*loader, map[string]*Environment) {
	l := newLoader("conf.d", nil, nil, nil)
	test, uat := &Environment{Name: "test"}, &Environment{Name: "uat"}
	l.cfg.Environments = []*Environment{test, uat}
	envs := map[string]*Environment{"test": test, "uat": uat}
	meta := func(kind, name string, line int) *objMeta {
		return &objMeta{kind: kind, object: objectName(kind, name), pos: Pos{File: "conf.d/a.toml", Line: line}}
	}
	for i := range n {
		u := &Upstream{Name: fmt.Sprintf("u%06d", i), Environment: "test"}
		l.cfg.Upstreams = append(l.cfg.Upstreams, u)
		l.upstreamMeta = append(l.upstreamMeta, meta("upstream", u.Name, i+1))
	}
	for i := range n + 1 {
		p := &Proxy{Name: fmt.Sprintf("p%d", i), Environment: "uat", BasePath: fmt.Sprintf("/p%d", i), Upstream: fmt.Sprintf("v%06d", i)}
		if i == n {
			p.Upstream = fmt.Sprintf("u%06d", n-1) // test's last: the hint names it
		}
		l.cfg.Proxies = append(l.cfg.Proxies, p)
		l.proxyMeta = append(l.proxyMeta, meta("proxy", p.Name, n+i+1))
	}
	return l, envs
}

// TestUndefinedUpstreamHints: a proxy naming an upstream its environment
// lacks is told where one of that name is defined, if anywhere.
func TestUndefinedUpstreamHints(t *testing.T) {
	const n = 1000
	l, envs := undefinedUpstreamLoader(n)
	l.checkContents(envs, nil)
	require.Len(t, l.errs, n+1)
	assert.Equal(t, `"v000000" is not defined in environment "uat"`, l.errs[0].Msg)
	assert.Equal(t, fmt.Sprintf(`"u%06d" is not defined in environment "uat" (it is defined in environment "test"; an upstream serves only its own environment)`, n-1), l.errs[n].Msg)
}

// BenchmarkUndefinedUpstreamHints: the hints walked every upstream of the
// configuration once per such proxy. 50,000 upstreams and 50,000 proxies
// naming missing ones (a directory of about 8 MiB, the most a load takes)
// spent about 12 s in these checks alone, in the serving process on every
// reload attempt; the upstreams are now indexed once per load.
func BenchmarkUndefinedUpstreamHints(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		l, envs := undefinedUpstreamLoader(50000)
		b.StartTimer()
		l.checkContents(envs, nil)
	}
}
