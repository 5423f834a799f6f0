package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestDrawDelayStaysWithinTheSpread(t *testing.T) {
	assert.Equal(t, 200*time.Millisecond, drawDelay(200*time.Millisecond, 0))
	lo, hi := time.Duration(1<<62), time.Duration(0)
	for range 10000 {
		d := drawDelay(200*time.Millisecond, 100*time.Millisecond)
		lo, hi = min(lo, d), max(hi, d)
	}
	assert.GreaterOrEqual(t, lo, 100*time.Millisecond)
	assert.LessOrEqual(t, hi, 300*time.Millisecond)
	// 10,000 uniform draws over 200 ms reach within 1 ms of both ends.
	assert.Less(t, lo, 101*time.Millisecond)
	assert.Greater(t, hi, 299*time.Millisecond)
}
