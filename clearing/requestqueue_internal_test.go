package clearing

import (
	"io/fs"
	"syscall"
	"testing"
)

// TestUnreadableForGood: a queued request clearing's user may not read is
// set aside (it would hold up every request after it); one unreadable for
// now (too many open files, an I/O error) is retried.
func TestUnreadableForGood(t *testing.T) {
	for _, tc := range []struct {
		err  error
		good bool
	}{
		{&fs.PathError{Op: "open", Path: "r.json", Err: syscall.EACCES}, true},
		{&fs.PathError{Op: "open", Path: "r.json", Err: syscall.EPERM}, true},
		{&fs.PathError{Op: "open", Path: "r.json", Err: syscall.EMFILE}, false},
		{&fs.PathError{Op: "read", Path: "r.json", Err: syscall.EIO}, false},
	} {
		if got := unreadableForGood(tc.err); got != tc.good {
			t.Errorf("%v: for good %v, want %v", tc.err, got, tc.good)
		}
	}
}
