package sqe

import "testing"

// The runtime preps one SQE per request on its hot path; these show what a
// Prep costs once inlined into the caller.

func BenchmarkPrepNop(b *testing.B) {
	s := dirty()
	for b.Loop() {
		s.PrepNop()
	}
	if s.Opcode != OpNop || s.UserData != sentinel {
		b.Fatal("PrepNop wrote the wrong SQE")
	}
}

func BenchmarkPrepRead(b *testing.B) {
	s := dirty()
	buf := make([]byte, 4096)
	for b.Loop() {
		s.PrepRead(3, buf, 8192)
	}
	if s.Opcode != OpRead || s.Len != 4096 || s.UserData != sentinel {
		b.Fatal("PrepRead wrote the wrong SQE")
	}
}
