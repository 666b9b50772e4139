//go:build race

package main

// raceEnabled: the race detector's sync.Pool drops a share of what is put
// back, so pooled objects are allocated again now and then.
const raceEnabled = true
