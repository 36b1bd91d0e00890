package clearing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/faregate/faregate/fare"
)

// The face erasure log: every erasure, appended (synced) before the store
// records it, outside the Badger store. A store restored from a backup
// made before an erasure would otherwise bring the subject back, and a new
// gate (one that never held the erasure) would admit its face again; at
// start, every erasure in the log that the store does not hold is applied
// again (openFaces). The log holds no template and no consent: the subject
// id, the enrolment version erased and who erased it when. Keep it where
// backups of the store are not restored over it (Config.FaceErasureLog).

// FaceErasureLogFile is the log's name in the data dir by default.
const FaceErasureLogFile = "face-erasures.jsonl"

// erasureLogEntry is one line of the log.
type erasureLogEntry struct {
	Subject         string    `json:"subject"`
	EnrolledVersion uint64    `json:"enrolled_version"`
	Version         uint64    `json:"version"`
	ErasedAt        time.Time `json:"erased_at"`
	ErasedBy        string    `json:"erased_by"`
	// Store is the clearing store's id (DATA/store-id, which a backup of
	// the data dir keeps): a log of another clearing's is not applied.
	Store string `json:"store,omitempty"`
}

func (c *Clearing) faceErasureLog() string {
	if c.cfg.FaceErasureLog != "" {
		return c.cfg.FaceErasureLog
	}
	return filepath.Join(c.cfg.DataDir, FaceErasureLogFile)
}

// appendErasureLog appends e's line (of store) to the log at path and
// syncs it (and the directory, when the file is new). A last line a crash
// cut short is removed first.
func appendErasureLog(path string, e *FaceErasure, store string) error {
	line, err := json.Marshal(erasureLogEntry{Subject: e.Subject, EnrolledVersion: e.EnrolledVersion, Version: e.Version, ErasedAt: e.ErasedAt, ErasedBy: e.ErasedBy, Store: store})
	if err != nil {
		return err
	}
	old, statErr := os.ReadFile(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("face erasure log: %w", err)
	}
	if n := len(old); n > 0 && old[n-1] != '\n' {
		// A line a crash cut short: its erasure never reached the store
		// nor was answered (the log is written first), so it goes.
		err = f.Truncate(int64(bytes.LastIndexByte(old, '\n') + 1))
	}
	if err == nil {
		_, err = f.Write(append(line, '\n'))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && errors.Is(statErr, fs.ErrNotExist) {
		err = fare.SyncDir(filepath.Dir(path))
	}
	if err != nil {
		return fmt.Errorf("face erasure log %s: %w", path, err)
	}
	return nil
}

// readErasureLog reads the log at path (none: no entries). A last line cut
// short (a crash while appending: its erasure never reached the store
// either, and was not answered) is left out; any other line that does not
// read is an error naming it.
func readErasureLog(path string) ([]erasureLogEntry, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("face erasure log: %w", err)
	}
	var out []erasureLogEntry
	lines := bytes.Split(b, []byte("\n"))
	for i, l := range lines {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		var e erasureLogEntry
		if err := json.Unmarshal(l, &e); err != nil || fare.ValidateID(e.Subject) != nil {
			if i == len(lines)-1 {
				break // the last line, cut short (no newline after it)
			}
			return nil, fmt.Errorf("face erasure log %s: line %d does not read (%q): mend or remove that line by hand", path, i+1, l)
		}
		out = append(out, e)
	}
	return out, nil
}

// reapplyErasures erases again, at start, every subject the log says was
// erased but the store still has enrolled at that enrolment (or an older
// one): a store restored from a backup made before the erasure. A subject
// enrolled again after its erasure (a newer version) is kept.
func (c *Clearing) reapplyErasures(ctx context.Context) error {
	f := c.faces
	entries, err := readErasureLog(c.faceErasureLog())
	if err != nil {
		return err
	}
	store, err := storeID(c.cfg.DataDir)
	if err != nil {
		return err
	}
	others := map[string]int{} // erasures of other stores, by store id
	defer func() {
		if len(others) > 0 {
			// Said, not silently skipped: a store restored into a new data
			// dir without its store id file reads as another store.
			f.log.Warn("the face erasure log holds erasures another clearing store made, not applied to this one: if this store was restored into a new data dir, put back its "+StoreIDFile+" file and restart, so that what the log says was erased stays erased",
				"log", c.faceErasureLog(), "this_store", store, "other_stores", others)
		}
	}()
	for _, le := range entries {
		if le.Store != "" && le.Store != store {
			others[le.Store]++ // another clearing's (a log copied or shared): not this store's erasures
			continue
		}
		r, ok := f.subjects[le.Subject]
		if !ok || r.Version > le.EnrolledVersion {
			// Nothing to erase (a subject enrolled after the backup and
			// erased, or enrolled again since): the galleries' version
			// still goes past the erasure's, so that gates which saw
			// changes this store lost take its heads again (not refused
			// as older) and, having read their keys whole under one at
			// least as new as their copy, drop what it no longer holds
			// (an outside review: an erased subject, enrolled and erased
			// after the backup, was matched again by a gate once the
			// restored store's version caught up with the gate's).
			f.version = max(f.version, le.Version)
			continue
		}
		e := FaceErasure{Subject: le.Subject, EnrolledVersion: r.Version, Version: max(f.version, le.Version) + 1, ErasedAt: le.ErasedAt,
			ErasedBy: le.ErasedBy, Reason: "applied again at start from the face erasure log: the store did not hold this erasure (restored from an older backup?)",
			Templates: r.Templates, Terminals: r.Sent, HolderOnly: !r.FaceOnly, EnrolledSince: r.claimSince()}
		if err := c.putFaceErasure(&e, true, nil); err != nil {
			return err
		}
		f.version = e.Version
		if _, err := f.store.Forget(ctx, le.Subject); err != nil {
			return fmt.Errorf("erase the templates of %s again: %w", le.Subject, err)
		}
		delete(f.subjects, le.Subject)
		c.faceClaims.forget(le.Subject)
		f.log.Warn("face subject erased again from the erasure log: the store did not hold its erasure (restored from an older backup?); its gallery keys are purged as the bucket is reconciled",
			"subject", le.Subject, "erased_at", le.ErasedAt, "erased_by", le.ErasedBy, "enrolled_version", r.Version)
	}
	return nil
}
