//go:build race

package edge

// raceEnabled: the race detector makes sync.Pool drop some of what is put
// back, so allocation counts are not the code's own.
const raceEnabled = true
