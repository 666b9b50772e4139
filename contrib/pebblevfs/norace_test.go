//go:build !race

package pebblevfs_test

const raceEnabled = false
