package pebblevfs

import (
	"github.com/cockroachdb/pebble/v2/vfs"

	ringwake "github.com/ringwake/ringwake/runtime"
)

// TableFile puts the table-file write buffer in front of rf, a file that
// Create could not make (a device that fails writes, for one).
func TableFile(r *ringwake.Ring, rf *ringwake.File) vfs.File {
	return newTableFile((&ringFS{r: r}).wrap(rf))
}

// BehindFile puts write-behind in front of rf, as TableFile.
func BehindFile(r *ringwake.Ring, rf *ringwake.File) vfs.File {
	return newBehindFile((&ringFS{r: r}).wrap(rf))
}

// SetWriteSync makes write-behind's syncs write through fn until restore
// is called.
func SetWriteSync(fn func(fd int, p []byte, off int64, flags int) (int, error)) (restore func()) {
	old := writeSync
	writeSync = fn
	return func() { writeSync = old }
}

// FileSyncStats is File.SyncStats of the *ringwake.File under a
// write-behind file: the fsyncs its group commit made.
func FileSyncStats(f vfs.File) (syncs, fsyncs uint64) {
	return f.(*behindFile).f.SyncStats()
}
