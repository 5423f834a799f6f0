//go:build race

package main

// raceOn: the race detector shuffles the run queue (runqputbatch).
const raceOn = true
