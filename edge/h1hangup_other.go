//go:build !linux

package edge

// Elsewhere a request that waits with its body unread is not watched.
const canWatchHangup = false

func peerHungUp(uintptr) bool { return false }
