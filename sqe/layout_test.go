package sqe

import (
	"testing"
	"unsafe"
)

func TestLayout(t *testing.T) {
	if got := unsafe.Sizeof(SQE{}); got != 64 || Size != 64 {
		t.Fatalf("sizeof(SQE) = %d, Size = %d, want 64", got, Size)
	}
	var s SQE
	offsets := []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"Opcode", unsafe.Offsetof(s.Opcode), 0},
		{"Flags", unsafe.Offsetof(s.Flags), 1},
		{"IoPrio", unsafe.Offsetof(s.IoPrio), 2},
		{"Fd", unsafe.Offsetof(s.Fd), 4},
		{"Off", unsafe.Offsetof(s.Off), 8},
		{"Addr", unsafe.Offsetof(s.Addr), 16},
		{"Len", unsafe.Offsetof(s.Len), 24},
		{"OpFlags", unsafe.Offsetof(s.OpFlags), 28},
		{"UserData", unsafe.Offsetof(s.UserData), 32},
		{"BufIndex", unsafe.Offsetof(s.BufIndex), 40},
		{"Personality", unsafe.Offsetof(s.Personality), 42},
		{"SpliceFdIn", unsafe.Offsetof(s.SpliceFdIn), 44},
		{"Addr3", unsafe.Offsetof(s.Addr3), 48},
	}
	for _, o := range offsets {
		if o.got != o.want {
			t.Errorf("offsetof(SQE.%s) = %d, want %d", o.name, o.got, o.want)
		}
	}
}
