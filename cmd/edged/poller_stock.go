//go:build !netpollfifo

package main

// poller: built without tools/netpollfifo's overlay, the stock runtime.
const poller = "stock"
