package pebblevfs

import (
	"context"

	"github.com/cockroachdb/pebble/v2/vfs"

	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
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

// SetSubmitChain makes write-behind submit its linked write and fsync
// through fn until restore is called.
func SetSubmitChain(fn func(r *ringwake.Ring, ctx context.Context, ss []sqe.SQE, res []int32) error) (restore func()) {
	old := submitChain
	submitChain = fn
	return func() { submitChain = old }
}

// FileSyncStats is File.SyncStats of the *ringwake.File under a
// write-behind file: the fsyncs its group commit made.
func FileSyncStats(f vfs.File) (syncs, fsyncs uint64) {
	return f.(*behindFile).f.SyncStats()
}
