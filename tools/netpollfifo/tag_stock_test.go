//go:build !netpollfifo

package main

const netpollFIFO = false
