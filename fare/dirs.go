package fare

import (
	"errors"
	"fmt"
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

// PrivateDir makes dir (and its parents) if it is not there and takes group
// and other users' access away from it if it has any: the stores in it
// (a gate's outbox, clearing's journal) hold card tokens and keys, and Badger
// creates its files readable by all (0644 under the usual umask), so only
// the directory keeps other users out. tightened is dir's mode before, when
// PrivateDir changed it; a directory it cannot change (another user's) is
// an error naming the mode.
func PrivateDir(dir string) (tightened os.FileMode, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	st, err := os.Stat(dir)
	if err != nil {
		return 0, err
	}
	if !st.IsDir() {
		return 0, fmt.Errorf("%s: not a directory", dir)
	}
	mode := st.Mode().Perm()
	if mode&0o077 == 0 {
		return 0, nil
	}
	if err := os.Chmod(dir, mode&0o700|0o700); err != nil {
		return 0, fmt.Errorf("%s is open to other users (mode %#o) and could not be made private (%w): chmod 700 it, or give a directory of this user's", dir, mode, err)
	}
	return mode, nil
}
