package clearing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/faregate/faregate/fare"
)

// DenyRequestsDir, in clearing's data dir, queues changes of the deny list
// made by `faregate clearing deny add|remove` (QueueDenyChange): clearing's
// store is locked by the running process, so the command leaves a request
// file there, which a running clearing applies within a second (a stopped
// one at its next start) and then deletes. Whoever may write clearing's data
// dir holds its keys anyway, as for the API token file. A request names the
// medium's key (fare.DenyKey), never its token; one that cannot be applied
// is renamed to <name>.rejected and logged.
const DenyRequestsDir = "deny-requests"

// DenyRequest is one queued change of the deny list.
type DenyRequest struct {
	// Key is fare.DenyKey of the medium: the raw token is not written.
	Key       string    `json:"key"`
	Media     string    `json:"media"`
	Listed    bool      `json:"listed"`
	Reason    string    `json:"reason,omitempty"`
	Requested time.Time `json:"requested"`
}

// ParseMedia reads "card" or "face".
func ParseMedia(s string) (fare.MediaKind, error) {
	switch s {
	case "card":
		return fare.Card, nil
	case "face":
		return fare.Face, nil
	}
	return 0, fmt.Errorf("media %q: want card or face", s)
}

// QueueDenyChange queues a change of the deny list in dataDir (see
// DenyRequestsDir): listed puts the medium on the list with reason, !listed
// takes it off. The file is written, synced and renamed into place; its
// path is returned and disappears once clearing has applied it.
func QueueDenyChange(dataDir string, m fare.MediaKind, token string, listed bool, reason string, now time.Time) (string, error) {
	ch, err := denyChangeOf(m, token, reason, groundHand, listed)
	if err != nil {
		return "", fmt.Errorf("queue deny-list change: %w", err)
	}
	b, err := json.Marshal(DenyRequest{Key: ch.key.Hex(), Media: m.String(), Listed: listed, Reason: ch.reason, Requested: now.UTC()})
	if err != nil {
		return "", err
	}
	return queueRequest(dataDir, DenyRequestsDir, "deny-list change", b, now)
}

// PendingDenyRequests lists the queued requests clearing has not applied
// yet, oldest first.
func PendingDenyRequests(dataDir string) ([]string, error) {
	return pendingRequests(dataDir, DenyRequestsDir, "deny-list requests")
}

// applyDenyQueue applies the queued requests in order, each as a change
// of its own, and deletes each once it is durable. A request that is
// invalid, or that clearing may never read (unreadableForGood), is renamed
// aside; one it cannot read now (EMFILE, EIO) is retried, with the ones
// after it, at the next round.
func (c *Clearing) applyDenyQueue(ctx context.Context) {
	paths, err := PendingDenyRequests(c.cfg.DataDir)
	if err != nil {
		c.log.Error("deny-list requests", "err", err)
		return
	}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil && !unreadableForGood(err) {
			// Unreadable now is not invalid: a card to block is not
			// dropped for it.
			c.log.Error("deny-list request unreadable; retrying", "file", path, "err", err)
			return
		}
		var ch denyChange
		if err == nil {
			ch, err = decodeDenyRequest(b)
		}
		if err != nil {
			if rerr := os.Rename(path, path+".rejected"); rerr != nil {
				c.log.Error("deny-list request refused; could not rename it aside", "file", path, "err", err, "rename_err", rerr)
				return
			}
			c.log.Error("deny-list request refused; renamed aside", "file", path+".rejected", "err", err)
			continue
		}
		chs := []denyChange{ch}
		if _, err := c.changeDenyList(ctx, chs); err != nil {
			c.log.Error("deny-list request not applied; retrying", "file", path, "err", err)
			return
		}
		// What it did, for the command waiting on it (a second ground
		// recorded, a debtor still listed): written before the request
		// goes, read and removed by the command.
		outcome := "applied"
		if chs[0].note != "" {
			outcome = "applied: " + chs[0].note
		}
		if err := os.WriteFile(path+denyOutcomeSuffix, []byte(outcome+"\n"), 0o600); err != nil {
			c.log.Warn("deny-list request's outcome not written", "file", path, "err", err)
		}
		if err := os.Remove(path); err != nil {
			c.log.Warn("deny-list request applied but not deleted (applying it again changes nothing)", "file", path, "err", err)
		}
		c.log.Info("deny-list request applied", "key", ch.key.Hex(), "listed", ch.listed, "file", filepath.Base(path), "note", chs[0].note)
	}
	removeStaleOutcomes(filepath.Join(c.cfg.DataDir, DenyRequestsDir), c.cfg.Now())
}

// unreadableForGood says whether a queued request's read error will not
// go away by waiting (a file clearing's user may not read, say one queued
// with sudo): set aside, it does not hold up the requests after it.
func unreadableForGood(err error) bool {
	return errors.Is(err, fs.ErrPermission)
}

// denyOutcomeSuffix names the file beside a request that says what
// applying it did.
const denyOutcomeSuffix = ".outcome"

// DenyRequestOutcome returns what clearing said applying the request at
// path did, once it has (ok false before, or when it said nothing), and
// removes the word.
func DenyRequestOutcome(path string) (string, bool) {
	b, err := os.ReadFile(path + denyOutcomeSuffix)
	if err != nil {
		return "", false
	}
	_ = os.Remove(path + denyOutcomeSuffix)
	return strings.TrimSpace(string(b)), true
}

// removeStaleOutcomes removes outcomes no command read within a day (one
// queued with --wait 0).
func removeStaleOutcomes(dir string, now time.Time) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), denyOutcomeSuffix) {
			continue
		}
		if info, err := e.Info(); err == nil && now.Sub(info.ModTime()) > 24*time.Hour {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// decodeDenyRequest decodes and checks a queued request's file.
func decodeDenyRequest(b []byte) (denyChange, error) {
	var r DenyRequest
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return denyChange{}, fmt.Errorf("not a deny-list request: %w", err)
	}
	m, err := ParseMedia(r.Media)
	if err != nil {
		return denyChange{}, err
	}
	k, err := fare.ParseDenyKey(r.Key)
	if err != nil {
		return denyChange{}, err
	}
	// The token is not in the request: check the rest with a stand-in.
	ch, err := denyChangeOf(m, "-", r.Reason, groundHand, r.Listed)
	if err != nil {
		return denyChange{}, err
	}
	ch.key = k
	return ch, nil
}

// ReadDenyList reads the deny list of a stopped clearing's store in dataDir
// (read-only); a running clearing holds its store, and serves the list to
// auditors (GET /v1/deny).
func ReadDenyList(dataDir string, log *slog.Logger) (version uint64, entries []DenyEntry, err error) {
	st, err := OpenStoreReadOnly(filepath.Join(dataDir, "store"), log)
	if errors.Is(err, ErrNoStore) {
		return 0, nil, err // a mistyped --data: no clearing there, running or not
	}
	if err != nil {
		return 0, nil, fmt.Errorf("%w (a running clearing holds its store: ask GET /v1/deny with an auditor token)", err)
	}
	defer st.Close()
	return st.DenyEntries("", 0)
}
