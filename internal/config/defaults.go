package config

import (
	"path/filepath"
	"time"
)

// applyDefaults fills in what the files left out. A field a file wrote is
// never replaced, even by its zero value: "workers = 0" is an error to
// report, not a request for the default.
func (l *loader) applyDefaults() {
	s := &l.cfg.Server
	sm := l.serverMeta
	set := func(field string) bool { return sm != nil && sm.isSet(field) }
	str := func(field string, v *string, def string) {
		if !set(field) {
			*v = def
		}
	}
	dur := func(field string, v *Duration, def time.Duration) {
		if !set(field) {
			v.Duration = def
		}
	}
	str("https", &s.HTTPS, DefaultHTTPS)
	str("admin", &s.Admin, DefaultAdmin)
	str("state_dir", &s.StateDir, DefaultStateDir)
	if s.HTTP != "" && !set("http_mode") {
		s.HTTPMode = "redirect"
	}
	dur("drain_timeout", &s.DrainTimeout, DefaultDrainTimeout)
	dur("shutdown_delay", &s.ShutdownDelay, DefaultShutdownDelay)
	dur("reload_debounce", &s.ReloadDebounce, DefaultReloadDebounce)
	// Never below the debounce, which it must not be: a longer
	// reload_debounce alone is valid.
	dur("reload_max_wait", &s.ReloadMaxWait, max(DefaultReloadMaxWait, s.ReloadDebounce.Duration))
	dur("rescan_interval", &s.RescanInterval, DefaultRescanInterval)
	dur("read_header_timeout", &s.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	dur("read_timeout", &s.ReadTimeout, DefaultReadTimeout)
	dur("write_timeout", &s.WriteTimeout, DefaultWriteTimeout)
	dur("idle_timeout", &s.IdleTimeout, DefaultIdleTimeout)
	if !set("max_body_bytes") {
		s.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if !set("history_keep") {
		s.HistoryKeep = DefaultHistoryKeep
	}
	if !set("max_header_bytes") {
		s.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if !set("h2_max_concurrent_streams") {
		s.H2MaxConcurrentStreams = DefaultH2Streams
	}
	if sm != nil && set("state_dir") && s.StateDir != "" {
		s.StateDir = resolvePath(sm.baseDir, s.StateDir)
	}
	if sm != nil && s.AccessLogDir != "" {
		s.AccessLogDir = resolvePath(sm.baseDir, s.AccessLogDir)
	}

	for _, e := range l.cfg.Environments {
		m := l.meta[e]
		if !m.isSet("workers") {
			e.Workers = DefaultWorkers
		}
		if e.Queue == nil {
			q := DefaultQueue
			e.Queue = &q
		}
		if !m.isSet("queue_timeout") {
			e.QueueTimeout.Duration = DefaultQueueTimeout
		}
		if !m.isSet("reject_delay") {
			e.RejectDelay.Duration = min(e.QueueTimeout.Duration, DefaultMaxRejectDelay)
		}
		if e.MaxBodyBytes == nil {
			b := s.MaxBodyBytes
			e.MaxBodyBytes = &b
		}
		if al := e.Rules.AccessLog; al != nil && al.Path != "" {
			al.Path = resolvePath(m.baseDir, al.Path)
		}
		if al := e.Rules.AccessLog; al != nil && al.Format == "" {
			al.Format = AccessLogJSON
		}
	}

	for _, vh := range l.cfg.VirtualHosts {
		m := l.meta[vh]
		if !m.isSet("min_tls") {
			vh.MinTLS = DefaultMinTLS
		}
		if !m.isSet("max_tls") {
			vh.MaxTLS = DefaultMaxTLS
		}
		for _, p := range []*string{&vh.CertFile, &vh.KeyFile, &vh.ClientCAFile} {
			if *p != "" {
				*p = resolvePath(m.baseDir, *p)
			}
		}
	}
}

// upstreamDefaults fills in what the file left out of an upstream.
// Upstreams are defaulted apart from the rest (see checkUpstream): nothing
// outside the upstream decides them.
func upstreamDefaults(u *Upstream, m *objMeta) {
	if !m.isSet("balance") {
		u.Balance = DefaultBalance
	}
	if !m.isSet("pass_host") {
		u.PassHost = DefaultPassHost
	}
	if !m.isSet("connect_timeout") {
		u.ConnectTimeout.Duration = DefaultConnectTimeout
	}
	if !m.isSet("response_timeout") {
		u.ResponseTimeout.Duration = DefaultResponseTimeout
	}
	if u.Retries == nil {
		r := DefaultRetries
		u.Retries = &r
	}
	if !m.isSet("max_idle_per_node") {
		u.MaxIdlePerNode = DefaultMaxIdlePerNode
	}
	if !m.isSet("idle_timeout") {
		u.IdleTimeout.Duration = DefaultUpstreamIdle
	}
	for i := range u.Nodes {
		if !m.isSet(indexPath("nodes", i) + ".weight") {
			u.Nodes[i].Weight = 1
		}
	}
	if a := u.Health.Active; a != nil {
		if !m.isSet("health.active.path") {
			a.Path = "/"
		}
		if !m.isSet("health.active.interval") {
			a.Interval.Duration = DefaultHealthInterval
		}
		if !m.isSet("health.active.timeout") {
			a.Timeout.Duration = DefaultHealthTimeout
		}
		if !m.isSet("health.active.healthy") {
			a.Healthy = DefaultHealthThreshold
		}
		if !m.isSet("health.active.unhealthy") {
			a.Unhealthy = DefaultHealthThreshold
		}
	}
	if p := u.Health.Passive; p != nil {
		if !m.isSet("health.passive.failures") {
			p.Failures = DefaultPassiveFailures
		}
		if !m.isSet("health.passive.eject") {
			p.Eject.Duration = DefaultPassiveEject
		}
	}
}

// resolvePath makes a path named in a file under base absolute.
func resolvePath(base, p string) string {
	if !filepath.IsAbs(p) {
		p = filepath.Join(base, p)
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return filepath.Clean(p)
}
