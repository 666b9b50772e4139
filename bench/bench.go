// Package bench holds what the benchmark tooling shares with
// cmd/uringbench: the C liburing reference program, embedded so that
// uringbench can build it wherever it runs.
package bench

import _ "embed"

// NopC is the source of reference/nop.c, the C liburing NOP loop that
// `uringbench -workload nop` compares ringwake against.
//
//go:embed reference/nop.c
var NopC []byte
