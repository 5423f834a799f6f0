package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNormalizeHostname(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      string
	}{
		{in: "api.example.com", want: "api.example.com"},
		{in: "API.Example.COM", want: "api.example.com"},
		{in: "api.example.com.", want: "api.example.com"},
		{in: "bücher.example", want: "xn--bcher-kva.example"},
		{in: "BÜCHER.example", want: "xn--bcher-kva.example"},
		{in: "xn--bcher-kva.example", want: "xn--bcher-kva.example"},
		{in: "*.Example.COM", want: "*.example.com"},
		{in: "*.bücher.example.", want: "*.xn--bcher-kva.example"},
		// Full stops the IDNA mapping turns into ".": a trailing one is
		// dropped like an ASCII trailing dot.
		{in: "a.com。", want: "a.com"},
		{in: "A.COM．", want: "a.com"},
		{in: "a｡com", want: "a.com"},
		{in: "*.bücher.example。", want: "*.xn--bcher-kva.example"},
		{in: "a.com.。", err: "empty label"},
		{in: "a。。com", err: "not a valid hostname"},
		{in: "。", err: "not a valid hostname"},
		{in: "*.。", err: "not a valid hostname"},
		{in: "localhost", want: "localhost"},
		{in: "10.0.0.1", want: "10.0.0.1"},
		{in: "", err: "empty"},
		{in: "*", err: "wildcard"},
		{in: "*.", err: "at least one label"},
		{in: ".", err: "at least one label"},
		{in: "a.*.com", err: "wildcard"},
		{in: "*a.com", err: "wildcard"},
		{in: "*.*.com", err: "wildcard"},
		{in: "**.com", err: "wildcard"},
		{in: "host:443", err: "port"},
		{in: "[::1]", err: "IPv6"},
		{in: "::1", err: "IPv6"},
		{in: "https://api.example.com", err: "not a hostname"},
		{in: "api.example.com/x", err: "not a hostname"},
		{in: "a b.com", err: "space"},
		{in: "a\tb.com", err: "space"},
		{in: "a_b.com", err: "not a valid hostname"},
		{in: "a..b.com", err: "not a valid hostname"},
		{in: "a.com..", err: "not a valid hostname"},
		{in: "-a.com", err: "not a valid hostname"},
		{in: "a!.com", err: "not a valid hostname"},
		{in: strings.Repeat("a", 64) + ".com", err: "not a valid hostname"},
		{in: "*.10.0.0.1", err: "IP address"},
		// A wildcard over a public suffix covers names nobody there owns
		// (every .com): a catch-all, which a bare "*" is refused as.
		{in: "*.com", err: `"*.com" covers every name under the public suffix "com"`},
		{in: "*.COM.", err: `public suffix "com"`},
		{in: "*.co.uk", err: `public suffix "co.uk"`},
		{in: "*.xn--p1ai", err: "public suffix"},
		{in: "*.рф", err: "public suffix"},
		// The list's private part names suffixes whose owner registers
		// the names under them: a wildcard over one is its owner's
		// (GitHub Pages serves *.github.io with one certificate).
		{in: "*.github.io", want: "*.github.io"},
		{in: "*.herokuapp.com", want: "*.herokuapp.com"},
		{in: "*.acme.co.uk", want: "*.acme.co.uk"},
		{in: "*.acme.github.io", want: "*.acme.github.io"},
		// Names no registry has are the operator's own.
		{in: "*.localhost", want: "*.localhost"},
		{in: "*.corp", want: "*.corp"},
		{in: "com", want: "com"},
		// A last label that is a number: no DNS name, and no IPv4
		// address in the only form Go's dialer and the Host header
		// take.
		{in: "127.1", err: "last label is a number"},
		{in: "1.2.3", err: "last label is a number"},
		{in: "256.1.1.1", err: "last label is a number"},
		{in: "010.0.0.1", err: "last label is a number"},
		{in: "0x7f.1", err: "last label is a number"},
		{in: "a.0x1F", err: "last label is a number"},
		{in: "a.0x", err: "last label is a number"},
		{in: "*.example.123", err: "last label is a number"},
		{in: "123", err: "last label is a number"},
		{in: "a.123.com", want: "a.123.com"},
		{in: "1.2.3.com", want: "1.2.3.com"},
		{in: "a.0xg", want: "a.0xg"},
		{in: "a.1x", want: "a.1x"},
		{in: "255.255.255.255", want: "255.255.255.255"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := NormalizeHostname(tc.in)
			if tc.err != "" {
				require.Error(t, err, "got %q", got)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
			again, err := NormalizeHostname(got)
			require.NoError(t, err)
			assert.Equal(t, got, again, "normalising is idempotent")
		})
	}
}

func TestLoaderStoresNormalisedHostnames(t *testing.T) {
	dir := setupDir(t, map[string]string{"10-base.toml": strings.Replace(baseObjects,
		`hostnames = ["test.example.com", "*.test.example.com"]`,
		`hostnames = ["TEST.Example.com.", "*.Test.Example.COM", "Bücher.test.example.com"]`, 1)})
	cfg, err := Load(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{"test.example.com", "*.test.example.com", "xn--bcher-kva.test.example.com"}, cfg.EnvGroups[0].Hostnames)
	assert.Empty(t, cfg.Warnings, "the certificate covers the normalised names")
}
