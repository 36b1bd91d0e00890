package fare

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// DirLocked reports whether another process holds dir's flock: Badger
// locks its store's directory itself while it has the store open.
func DirLocked(dir string) bool {
	d, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer d.Close()
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	_ = unix.Flock(int(d.Fd()), unix.LOCK_UN)
	return false
}

// SyncDir syncs dir itself, so that a file created, renamed or removed in
// it survives a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
