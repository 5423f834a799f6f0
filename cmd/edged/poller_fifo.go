//go:build netpollfifo

package main

// poller is how this binary's Go runtime orders the goroutines one network
// poll wakes: built with make, "ready order" (tools/netpollfifo).
const poller = "ready order"
