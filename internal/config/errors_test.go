package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestErrorRendering(t *testing.T) {
	for _, tc := range []struct {
		name           string
		e              Error
		error, warning string
	}{
		{"full", Error{Pos: Pos{"conf.d/uat.toml", 14}, Object: `proxy "users"`, Field: "upstream", Msg: "not defined"},
			`conf.d/uat.toml:14: proxy "users": upstream: not defined`,
			`conf.d/uat.toml:14: warning: proxy "users": upstream: not defined`},
		{"no-field", Error{Pos: Pos{"conf.d/uat.toml", 2}, Object: `environment "uat"`, Msg: "attached to no env_group"},
			`conf.d/uat.toml:2: environment "uat": attached to no env_group`,
			`conf.d/uat.toml:2: warning: environment "uat": attached to no env_group`},
		{"file-only", Error{Pos: Pos{File: "conf.d"}, Msg: "no configuration files"},
			`conf.d: no configuration files`,
			`conf.d: warning: no configuration files`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.error, tc.e.Error())
			assert.Equal(t, tc.warning, tc.e.Warning())
		})
	}
}
