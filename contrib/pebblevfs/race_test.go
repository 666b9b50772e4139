//go:build race

package pebblevfs_test

// raceEnabled: the race detector slows Pebble several times over, so the
// database tests size themselves down.
const raceEnabled = true
