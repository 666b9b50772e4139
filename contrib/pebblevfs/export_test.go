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
