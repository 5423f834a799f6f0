package deadline

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestLazy(t *testing.T) {
	now := time.Unix(1000, 0)
	d := 16 * time.Second // slack 1 s
	want := now.Add(d + time.Second)
	for _, tc := range []struct {
		name string
		at   time.Time // zero: unknown
		set  bool
	}{
		{"unknown", time.Time{}, true},
		{"set just now", want, false},
		{"at the asked deadline", now.Add(d), false},
		{"earlier than asked", now.Add(d - time.Millisecond), true},
		{"later than the slack", now.Add(d + 2*time.Second), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l Lazy
			if !tc.at.IsZero() {
				l.at = tc.at.UnixNano()
			}
			got, set := l.After(now, d)
			assert.Equal(t, tc.set, set)
			if tc.set {
				assert.True(t, got.Equal(want), "set to the asked deadline plus the slack: %v", got)
				assert.Equal(t, want.UnixNano(), l.at)
			} else {
				assert.Equal(t, tc.at.UnixNano(), l.at, "left alone")
			}
		})
	}
	var l Lazy
	_, set := l.After(now, d)
	assert.True(t, set)
	l.Forget()
	_, set = l.After(now, d)
	assert.True(t, set, "after Forget the same deadline is set again")

	assert.Equal(t, time.Second, Slack(time.Minute))
	assert.Equal(t, 25*time.Millisecond, Slack(400*time.Millisecond))
}
