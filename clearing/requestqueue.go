package clearing

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/faregate/faregate/fare"
)

// Request queues: a command run beside clearing (faregate clearing deny
// add, enrol add) writes a request file into a directory of clearing's data
// dir, which the running clearing applies and deletes (a stopped one at its
// next start). Files are written to a hidden temporary name, synced and
// renamed, so clearing never reads half a request; names sort in the order
// they were queued.

// queueRequest writes b as the next request file of dataDir/sub; what
// names the request in errors.
func queueRequest(dataDir, sub, what string, b []byte, now time.Time) (string, error) {
	if _, err := os.Stat(dataDir); err != nil {
		return "", fmt.Errorf("queue %s: clearing data dir: %w", what, err)
	}
	if !isClearingDir(dataDir) {
		// Queued where no clearing looks, it would never be applied.
		return "", fmt.Errorf("queue %s: %s is not clearing's data directory (no store, no %s, no %s): give the --data of `faregate clearing`", what, dataDir, ConfirmKeyFile, RiderKeyFile)
	}
	dir := filepath.Join(dataDir, sub)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("queue %s: %w", what, err)
	}
	var r [6]byte
	_, _ = rand.Read(r[:])
	name := fmt.Sprintf("%020d-%s.json", now.UnixNano(), hex.EncodeToString(r[:]))
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := writeSynced(tmp, b, os.O_CREATE|os.O_EXCL, 0o600); err != nil {
		return "", fmt.Errorf("queue %s: %w", what, err)
	}
	path := filepath.Join(dir, name)
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("queue %s: %w", what, err)
	}
	if err := fare.SyncDir(dir); err != nil {
		return "", fmt.Errorf("queue %s: %w", what, err)
	}
	return path, nil
}

// isClearingDir says whether a clearing has used dataDir: its store, or
// the keys it makes at its first start (or `clearing key` made).
func isClearingDir(dataDir string) bool {
	if HasStore(StoreDir(dataDir)) {
		return true
	}
	for _, f := range []string{ConfirmKeyFile, RiderKeyFile} {
		if _, err := os.Stat(filepath.Join(dataDir, f)); err == nil {
			return true
		}
	}
	return false
}

// pendingRequests lists the request files of dataDir/sub not applied yet,
// oldest first.
func pendingRequests(dataDir, sub, what string) ([]string, error) {
	dir := filepath.Join(dataDir, sub)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var out []string
	for _, e := range entries {
		if n := e.Name(); e.Type().IsRegular() && strings.HasSuffix(n, ".json") && !strings.HasPrefix(n, ".") {
			out = append(out, filepath.Join(dir, n))
		}
	}
	slices.Sort(out)
	return out, nil
}
