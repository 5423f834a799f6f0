package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
)

const testServer = `[server]
https = "127.0.0.1:8443"
admin = "127.0.0.1:0"
`

// groupTOML is an environment with an env group and its virtual host,
// whose files are ../certs/<cert>.pem and .key.
func groupTOML(name, cert string, hostnames ...string) string {
	q := make([]string, len(hostnames))
	for i, h := range hostnames {
		q[i] = `"` + h + `"`
	}
	return `
[[environment]]
name = "` + name + `"

[[env_group]]
name = "` + name + `-group"
hostnames = [` + strings.Join(q, ", ") + `]
environments = ["` + name + `"]

[[virtual_host]]
name = "` + name + `-group"
cert_file = "../certs/` + cert + `.pem"
key_file = "../certs/` + cert + `.key"
`
}

// writeConf writes files into root/conf.d and returns its path.
func writeConf(t *testing.T, root string, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(root, "conf.d")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for name, content := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
	return dir
}

func runDevcerts(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// leafNames returns the DNS names of the first certificate in path.
func leafNames(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	block, _ := pem.Decode(b)
	require.NotNil(t, block, "%s holds no PEM", path)
	c, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return c.DNSNames
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// TestCertificatesFollowTheVirtualHosts: one certificate per file the
// virtual hosts name, covering their groups' hostnames (IDNs in punycode),
// which edged then loads without a warning; a re-run keeps the CA and what
// is still right, and remakes a certificate whose hostnames changed.
func TestCertificatesFollowTheVirtualHosts(t *testing.T) {
	root := t.TempDir()
	certs := filepath.Join(root, "certs")
	conf := writeConf(t, root, map[string]string{
		"server.toml": testServer,
		"a.toml":      groupTOML("a", "a.example.com", "a.example.com", "*.a.example.com", "Bücher.example"),
		"b.toml":      groupTOML("b", "b", "b.example.com"),
	})

	code, out, errOut := runDevcerts(t, "-c", conf, "-dir", certs)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, []string{"a.example.com", "*.a.example.com", "xn--bcher-kva.example"}, leafNames(t, filepath.Join(certs, "a.example.com.pem")))
	assert.Equal(t, []string{"b.example.com"}, leafNames(t, filepath.Join(certs, "b.pem")))
	for _, f := range []string{"ca.pem", "ca.key", "a.example.com.key", "b.key", "demo-client.pem", "demo-client.key"} {
		assert.FileExists(t, filepath.Join(certs, f))
	}
	assert.Contains(t, out, "--resolve a.example.com:8443:127.0.0.1 https://a.example.com:8443/")
	cfg, err := config.Load(conf)
	require.NoError(t, err, "edged loads what devcerts made")
	assert.Empty(t, cfg.Warnings, "the certificates cover every hostname")

	ca, a, b := readFile(t, filepath.Join(certs, "ca.pem")), readFile(t, filepath.Join(certs, "a.example.com.pem")), readFile(t, filepath.Join(certs, "b.pem"))
	code, out, errOut = runDevcerts(t, "-c", conf, "-dir", certs)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, 4, strings.Count(out, " kept\n"), "CA, two servers, client:\n%s", out)
	assert.Equal(t, a, readFile(t, filepath.Join(certs, "a.example.com.pem")))

	require.NoError(t, os.WriteFile(filepath.Join(conf, "b.toml"), []byte(groupTOML("b", "b", "b.example.com", "c.example.com")), 0o644))
	code, out, errOut = runDevcerts(t, "-c", conf, "-dir", certs)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, filepath.Join(certs, "b.pem"))
	assert.Regexp(t, `b\.pem\s+renewed: SANs differ`, out)
	assert.Equal(t, []string{"b.example.com", "c.example.com"}, leafNames(t, filepath.Join(certs, "b.pem")))
	assert.NotEqual(t, b, readFile(t, filepath.Join(certs, "b.pem")))
	assert.Equal(t, a, readFile(t, filepath.Join(certs, "a.example.com.pem")))
	assert.Equal(t, ca, readFile(t, filepath.Join(certs, "ca.pem")), "the CA is kept")
}

// TestExampleConfDir: 'make certs' makes what the repository's conf.d
// names, and 'edged check' then passes without warnings.
func TestExampleConfDir(t *testing.T) {
	root := t.TempDir()
	copies := map[string]string{}
	err := filepath.WalkDir("../../conf.d", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel("../../conf.d", p)
		copies[rel] = readFile(t, p)
		return err
	})
	require.NoError(t, err)
	require.Contains(t, copies, filepath.Join("prod", "prod.toml"), "one directory per environment")
	conf := writeConf(t, root, copies)
	certs := filepath.Join(root, "certs")

	code, _, errOut := runDevcerts(t, "-c", conf, "-dir", certs)
	require.Equal(t, 0, code, errOut)
	cfg, err := config.Load(conf)
	require.NoError(t, err)
	assert.Empty(t, cfg.Warnings)
	require.NotEmpty(t, cfg.VirtualHosts)
	for _, vh := range cfg.VirtualHosts {
		assert.Equal(t, certs, filepath.Dir(vh.CertFile), "virtual_host %q", vh.Name)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		toml string
		dir  string // -dir, relative to the test's root; "certs" if empty
		args []string
		code int
		want []string // on stderr
	}{
		{name: "cert-elsewhere", toml: groupTOML("a", "a", "a.example.com"), dir: "other",
			code: 1, want: []string{"a.toml:10: virtual_host \"a-group\": cert_file", "is not in", "other"}},
		{name: "key-name-differs", toml: strings.Replace(groupTOML("a", "a", "a.example.com"), "certs/a.key", "certs/b.key", 1),
			code: 1, want: []string{`virtual_host "a-group": key_file`, "a.key"}},
		{name: "not-pem", toml: strings.Replace(groupTOML("a", "a", "a.example.com"), "certs/a.pem", "certs/a.crt", 1),
			code: 1, want: []string{`cert_file`, "a.crt", "NAME.pem"}},
		{name: "invalid-config", toml: groupTOML("a", "a", "a.example.com") + "\n[[proxy]]\nname = \"p\"\nenvironment = \"a\"\nbase_path = \"/a%20b\"\ntarget = \"http://127.0.0.1:1\"\n",
			code: 1, want: []string{"a.toml:18: proxy \"p\": base_path:", "configuration in", "is invalid: 1 error(s)"}},
		{name: "no-virtual-host", toml: "[[environment]]\nname = \"a\"\n",
			code: 1, want: []string{"no virtual host, so no certificate to make", "devcerts: nothing written"}},
		{name: "leftover-argument", toml: groupTOML("a", "a", "a.example.com"), args: []string{"extra"},
			code: 2, want: []string{`unexpected arguments ["extra"]`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			conf := writeConf(t, root, map[string]string{"server.toml": testServer, "a.toml": tc.toml})
			dir := tc.dir
			if dir == "" {
				dir = "certs"
			}
			code, _, errOut := runDevcerts(t, append([]string{"-c", conf, "-dir", filepath.Join(root, dir)}, tc.args...)...)
			assert.Equal(t, tc.code, code, errOut)
			for _, w := range tc.want {
				assert.Contains(t, errOut, w)
			}
			assert.NoFileExists(t, filepath.Join(root, dir, "ca.pem"), "nothing written")
		})
	}
}
