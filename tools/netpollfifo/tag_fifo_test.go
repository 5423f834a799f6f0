//go:build netpollfifo

package main

// netpollFIFO: this binary was built with the overlay (see prepare).
const netpollFIFO = true
