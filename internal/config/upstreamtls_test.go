package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// upstreamWith is an upstream of the test environment with one node and
// extra keys, for a file of its own ([[upstream]] on line 1, the keys from
// line 5).
func upstreamWith(url, extra string) string {
	return `[[upstream]]
name = "secure"
environment = "test"
nodes = [{ url = "` + url + `" }]
` + extra + "\n"
}

func upstreamNamed(cfg *Config, name string) *Upstream {
	for _, u := range cfg.Upstreams {
		if u.Name == name {
			return u
		}
	}
	return nil
}

// tls_ca_file is resolved against its file's directory and read at every
// load; tls_server_name is a hostname as SNI carries it.
func TestUpstreamCAFileLoads(t *testing.T) {
	dir := setupDir(t, map[string]string{
		"20-secure.toml": upstreamWith("https://10.0.0.5", `tls_ca_file = "../certs/backend-ca.pem"`+"\n"+`tls_server_name = "Backend.Internal."`),
	})
	ca := filepath.Join(filepath.Dir(dir), "certs", "backend-ca.pem")
	require.NoError(t, os.WriteFile(ca, newCert(t, []string{"ca"}, time.Now().Add(365*24*time.Hour)).cert, 0o644))
	ld := &Loader{Dir: dir}
	cfg, err := ld.Load()
	require.NoError(t, err)
	assert.Empty(t, cfg.Warnings)
	u := upstreamNamed(cfg, "secure")
	require.NotNil(t, u)
	assert.Equal(t, ca, u.TLSCAFile)
	assert.Equal(t, "backend.internal", u.TLSServerName, "lowercased, without its trailing dot")
	assert.Equal(t, DefaultUpstreamIdle, u.IdleTimeout.Duration)
	require.Contains(t, cfg.UpstreamCAs, ca)
	assert.False(t, cfg.TLSChangedOnDisk())

	// A renewed bundle under the same name: the rescan sees it, and the
	// next load reads it although no config file changed (the upstream
	// object is shared with the load before).
	require.NoError(t, os.WriteFile(ca, newCert(t, []string{"ca2"}, time.Now().Add(365*24*time.Hour)).cert, 0o644))
	assert.True(t, cfg.TLSChangedOnDisk(), "a rewritten tls_ca_file")
	again, err := ld.Load()
	require.NoError(t, err)
	assert.Same(t, u, upstreamNamed(again, "secure"), "the unchanged file's upstream is shared")
	assert.NotEqual(t, cfg.UpstreamCAs[ca].SHA256, again.UpstreamCAs[ca].SHA256, "the bundle is read again")
	assert.False(t, again.TLSChangedOnDisk())

	// Gone: the reload fails, naming the field.
	require.NoError(t, os.Remove(ca))
	_, err = ld.Load()
	require.Error(t, err)
	assert.Contains(t, err.Error(), `20-secure.toml:5: upstream "secure": tls_ca_file: cannot read: open `+ca)
}

func TestUpstreamConnSettingsErrors(t *testing.T) {
	for _, tc := range []struct {
		name, url, extra, want string
	}{
		{"bundle missing", "https://10.0.0.5", `tls_ca_file = "nope.pem"`, `20-secure.toml:5: upstream "secure": tls_ca_file: cannot read: `},
		{"bundle without a certificate", "https://10.0.0.5", `tls_ca_file = "../certs/test.key"`, `tls_ca_file: ` + "%CERTS%" + `/test.key holds no PEM certificate`},
		{"bundle cut short", "https://10.0.0.5", `tls_ca_file = "../certs/cut.pem"`, `tls_ca_file: ` + "%CERTS%" + `/cut.pem: 1 of its 1 PEM blocks do not decode`},
		{"server name with a port", "https://10.0.0.5", `tls_server_name = "backend.internal:443"`, `20-secure.toml:5: upstream "secure": tls_server_name: `},
		{"wildcard server name", "https://10.0.0.5", `tls_server_name = "*.internal"`, `tls_server_name: "*.internal": a server name cannot be a wildcard`},
		{"client certificate without its key", "https://10.0.0.5", `tls_cert_file = "../certs/test.pem"`, `20-secure.toml:5: upstream "secure": tls_key_file: required with tls_cert_file`},
		{"client key without its certificate", "https://10.0.0.5", `tls_key_file = "../certs/test.key"`, `20-secure.toml:5: upstream "secure": tls_cert_file: required with tls_key_file`},
		{"client key of another certificate", "https://10.0.0.5", "tls_cert_file = \"../certs/other.pem\"\ntls_key_file = \"../certs/test.key\"", `20-secure.toml:5: upstream "secure": tls_cert_file: `},
		{"client key missing", "https://10.0.0.5", "tls_cert_file = \"../certs/test.pem\"\ntls_key_file = \"../certs/nope.key\"", `20-secure.toml:6: upstream "secure": tls_key_file: cannot read the key: `},
		{"idle timeout too short", "http://10.0.0.5", `idle_timeout = "1ms"`, `20-secure.toml:5: upstream "secure": idle_timeout: must be at least 100ms, not "1ms"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := setupDir(t, map[string]string{"20-secure.toml": upstreamWith(tc.url, tc.extra)})
			certs := filepath.Join(filepath.Dir(dir), "certs")
			require.NoError(t, os.WriteFile(filepath.Join(certs, "cut.pem"), []byte("-----BEGIN CERTIFICATE-----\nMIIB\n"), 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(certs, "other.pem"), newCert(t, []string{"other"}, time.Now().Add(time.Hour)).cert, 0o644))
			_, errs := loadErrors(t, dir)
			want := strings.ReplaceAll(tc.want, "%CERTS%", certs)
			_, ok := findError(errs, want)
			assert.True(t, ok, "want %q in %v", want, errs)
		})
	}
}

// TLS settings on an upstream with no https node do nothing: a warning,
// at every load (the upstream's own findings are kept with the object,
// and an unchanged file's object is not checked again).
func TestUpstreamTLSWithoutHTTPSNodeWarns(t *testing.T) {
	dir := setupDir(t, map[string]string{"20-secure.toml": upstreamWith("http://10.0.0.5", `tls_server_name = "backend.internal"`)})
	ld := &Loader{Dir: dir}
	for range 2 {
		cfg, err := ld.Load()
		require.NoError(t, err)
		require.Len(t, cfg.Warnings, 1)
		assert.Contains(t, cfg.Warnings[0].Warning(), `20-secure.toml:5: warning: upstream "secure": tls_server_name: no node of this upstream is https: it is not used`)
	}
}

// A client certificate loads as a pair, its key's mode is checked as a
// virtual host's is, and a renewal under the same names is a change the
// rescan sees.
func TestUpstreamClientCertificateLoads(t *testing.T) {
	dir := setupDir(t, map[string]string{
		"20-secure.toml": upstreamWith("https://10.0.0.5", "tls_cert_file = \"../certs/test.pem\"\ntls_key_file = \"../certs/test.key\""),
	})
	key := filepath.Join(filepath.Dir(dir), "certs", "test.key")
	require.NoError(t, os.Chmod(key, 0o644))
	cfg, err := Load(dir)
	require.NoError(t, err)
	u := upstreamNamed(cfg, "secure")
	require.NotNil(t, u)
	c := cfg.UpstreamCerts[ClientCertKey(u)]
	require.NotNil(t, c)
	assert.NotNil(t, c.Cert.PrivateKey)
	var warned bool
	for _, w := range cfg.Warnings {
		if w.Field == "tls_key_file" {
			warned = true
			assert.Contains(t, w.Warning(), `20-secure.toml:6: warning: upstream "secure": tls_key_file: private key `+key+` is readable by every user`)
		}
	}
	assert.True(t, warned, "a world-readable key: %v", cfg.Warnings)
	assert.False(t, cfg.TLSChangedOnDisk())

	renewed := newCert(t, []string{"edge"}, time.Now().Add(time.Hour))
	pem := filepath.Join(filepath.Dir(dir), "certs", "client.pem")
	require.NoError(t, os.WriteFile(pem, renewed.cert, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(dir), "certs", "client.key"), renewed.key, 0o600))
	writeTree(t, dir, map[string]string{"20-secure.toml": upstreamWith("https://10.0.0.5", "tls_cert_file = \"../certs/client.pem\"\ntls_key_file = \"../certs/client.key\"")})
	cfg, err = Load(dir)
	require.NoError(t, err)
	again := newCert(t, []string{"edge"}, time.Now().Add(2*time.Hour))
	require.NoError(t, os.WriteFile(pem, again.cert, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(dir), "certs", "client.key"), again.key, 0o600))
	assert.True(t, cfg.TLSChangedOnDisk(), "a renewed client certificate")
}

// http:// and https:// to the same host and port are one port spoken two
// ways, and would give two nodes the same series (labelled by host and
// port): an error, as a node listed twice is.
func TestNodeWithTwoSchemesIsAnError(t *testing.T) {
	dir := setupDir(t, map[string]string{"20-secure.toml": `[[upstream]]
name = "secure"
environment = "test"
nodes = [{ url = "http://10.0.0.5:8443" },
         { url = "HTTPS://10.0.0.5:8443" }]
`})
	_, errs := loadErrors(t, dir)
	_, ok := findError(errs, `20-secure.toml:5: upstream "secure": nodes[1].url: 10.0.0.5:8443 is nodes[0] with another scheme; a port speaks TLS or plain HTTP, not both`)
	assert.True(t, ok, "%v", errs)
}

// TestBackendNamesTakeUnderscores: the names edged connects to or sends to
// a backend may hold '_', as internal names do (a Docker Compose service
// "user_service", an Active Directory host): Go resolves them, sends one as
// SNI and verifies a certificate for it, and nginx and HAProxy take them.
// They are lowercased like any other name. A public hostname of an env
// group still may not: no browser sends one.
func TestBackendNamesTakeUnderscores(t *testing.T) {
	const extra = `
[[upstream]]
name = "svc"
environment = "test"
nodes = [{ url = "https://User_Service:8443" }, { url = "http://_orders._tcp.Internal" }]
tls_server_name = "User_Service.Internal"
pass_host = "rewrite"
upstream_host = "User_Service:8080"

[[proxy]]
name = "orders"
environment = "test"
base_path = "/orders"
target = "http://Orders_API:8080/v1"
`
	dir := setupDir(t, map[string]string{"20-svc.toml": extra})
	cfg, errs := loadErrors(t, dir)
	require.Empty(t, errs, "%s", describeErrors(errs))
	u := upstreamNamed(cfg, "svc")
	require.NotNil(t, u)
	assert.Equal(t, []Node{{URL: "https://user_service:8443", Weight: 1}, {URL: "http://_orders._tcp.internal:80", Weight: 1}}, u.Nodes)
	assert.Equal(t, "user_service.internal", u.TLSServerName)
	assert.Equal(t, "user_service:8080", u.UpstreamHost)
	var target string
	for _, p := range cfg.Proxies {
		if p.Name == "orders" {
			target = p.Target
		}
	}
	assert.Equal(t, "http://orders_api:8080/v1", target)

	// Still names: a '_' does not make anything else pass.
	for _, bad := range []string{"a..b_c", "user service_x", "x_y:99999", "bü_cher.example", "1_2.3"} {
		_, err := normalizeBackendHost(bad)
		assert.Error(t, err, "%q", bad)
	}

	dir = setupDir(t, map[string]string{"20-svc.toml": `
[[environment]]
name = "uat"
[[env_group]]
name = "g2"
hostnames = ["api_v2.example.com"] #!
environments = ["uat"]
`})
	_, errs = loadErrors(t, dir)
	_, ok := findErrorOf(errs, `env_group "g2"`, "hostnames[0]", "not a valid hostname")
	assert.True(t, ok, "%s", describeErrors(errs))
}

// TestUpstreamClientCertificateExpiryWarns: a virtual host's certificate
// that expired, expires within 14 days or is not valid yet is a warning;
// an upstream's client certificate (tls_cert_file) was not, and once
// expired every request to its https nodes fails its handshake (502).
// It is warned of as a virtual host's is, on tls_cert_file.
func TestUpstreamClientCertificateExpiryWarns(t *testing.T) {
	for _, tc := range []struct {
		name      string
		notBefore time.Time
		notAfter  time.Time
		want      string // "" for none
	}{
		{"valid", time.Now().Add(-time.Hour), time.Now().Add(365 * 24 * time.Hour), ""},
		{"expired", time.Now().Add(-48 * time.Hour), time.Now().Add(-time.Hour), "certificate expired at"},
		{"expires-soon", time.Now().Add(-time.Hour), time.Now().Add(3 * 24 * time.Hour), "renew it"},
		{"not-yet-valid", time.Now().Add(24 * time.Hour), time.Now().Add(365 * 24 * time.Hour), "not valid before"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCertValid(t, []string{"edge"}, tc.notBefore, tc.notAfter)
			dir := setupDir(t, map[string]string{
				"20-secure.toml": upstreamWith("https://10.0.0.5", "tls_cert_file = \"../certs/client.pem\"\ntls_key_file = \"../certs/client.key\""),
			})
			writeTree(t, filepath.Join(filepath.Dir(dir), "certs"), map[string]string{"client.pem": string(c.cert), "client.key": string(c.key)})
			cfg, err := Load(dir)
			require.NoError(t, err, "a warning, not an error")
			var got []string
			for _, w := range cfg.Warnings {
				if w.Field == "tls_cert_file" && !strings.Contains(w.Msg, "extended key usage") { // newCert's are for servers
					got = append(got, w.Warning())
				}
			}
			if tc.want == "" {
				assert.Empty(t, got)
				return
			}
			require.Len(t, got, 1, "%v", cfg.Warnings)
			assert.Contains(t, got[0], `20-secure.toml:5: warning: upstream "secure": tls_cert_file: `)
			assert.Contains(t, got[0], tc.want)
		})
	}
}

// TestUpstreamCAExpiryWarns: a CA of a virtual host's client_ca_file that
// has expired, expires within 14 days or is not valid yet is a warning
// (ba1ecaf); one of an upstream's tls_ca_file was not, though Go checks
// the validity of every certificate of a node's chain, the root's too:
// once it expires, every handshake to the nodes it issued fails, each
// request a 502. It is warned of on tls_ca_file, once per file however
// many upstreams name it.
func TestUpstreamCAExpiryWarns(t *testing.T) {
	year := time.Now().Add(365 * 24 * time.Hour)
	mk := func(cn string, notBefore, notAfter time.Time) []byte {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		return selfSigned(t, key, nil, notBefore, notAfter, func(c *x509.Certificate) {
			c.Subject.CommonName, c.IsCA, c.BasicConstraintsValid, c.KeyUsage = cn, true, true, x509.KeyUsageCertSign
		}).cert
	}
	hourAgo := time.Now().Add(-time.Hour)
	for _, tc := range []struct {
		name string
		cas  []byte
		want []string // substrings, one warning each
	}{
		{name: "valid", cas: mk("Good CA", hourAgo, year)},
		{name: "expires-in-15-days", cas: mk("Good CA", hourAgo, time.Now().Add(15*24*time.Hour))},
		{name: "expires-in-13-days", cas: append(mk("Good CA", hourAgo, year), mk("Soon CA", hourAgo, time.Now().Add(13*24*time.Hour))...),
			want: []string{`CA "Soon CA" in ` + "\x00" + `: certificate expires at`}},
		{name: "expired", cas: append(mk("Old CA", time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)), mk("Good CA", hourAgo, year)...),
			want: []string{`CA "Old CA" in ` + "\x00" + `: certificate expired at`}},
		{name: "not-yet-valid", cas: mk("Early CA", time.Now().Add(time.Hour), year),
			want: []string{`CA "Early CA" in ` + "\x00" + `: certificate is not valid before`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			second := strings.Replace(upstreamWith("https://10.0.0.6", `tls_ca_file = "../certs/backend-ca.pem"`), `name = "secure"`, `name = "secure2"`, 1)
			dir := setupDir(t, map[string]string{
				"20-secure.toml":  upstreamWith("https://10.0.0.5", `tls_ca_file = "../certs/backend-ca.pem"`),
				"21-secure2.toml": second,
			})
			bundle := filepath.Join(filepath.Dir(dir), "certs", "backend-ca.pem")
			require.NoError(t, os.WriteFile(bundle, tc.cas, 0o644))
			cfg, err := Load(dir)
			require.NoError(t, err, "a CA's expiry is a warning, not an error")
			require.Len(t, cfg.Warnings, len(tc.want), "%v", cfg.Warnings)
			for i, want := range tc.want {
				w := cfg.Warnings[i]
				assert.Contains(t, w.Msg, strings.Replace(want, "\x00", bundle, 1))
				assert.Equal(t, `upstream "secure"`, w.Object, "on the first upstream naming the file")
				assert.Equal(t, "tls_ca_file", w.Field)
				assert.Contains(t, w.Warning(), "20-secure.toml:5: ")
			}
		})
	}
}
