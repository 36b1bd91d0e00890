package terminal

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/fare"
)

// ReasonEntryDamaged is the reason of the denied tap a gate signs in place
// of an outbox entry its disk damaged (GiveUpDamaged), and EntryDamagedToken
// that tap's card token, which is no card's.
const (
	ReasonEntryDamaged = "outbox-entry-damaged"
	EntryDamagedToken  = "outbox-entry-damaged"
)

// GiveUpDamaged gives up outbox entry seq of the gate cfg describes, which
// its disk damaged: the entry no longer verifies with the gate's key, so it
// is never sent, and clearing, which confirms only unbroken runs of
// sequences, keeps every later entry in the outbox for ever. In its place
// the gate signs, under the same sequence, a denied tap of reason
// ReasonEntryDamaged (charged to nobody, shown to operators as what it
// is); the damaged bytes are saved beside the store, owner-only, for
// whoever recovers the tap, and their path returned. Run with the gate
// stopped. An entry that verifies, one outside the outbox's pending
// sequences, or a key or id other than the outbox's is refused.
func GiveUpDamaged(cfg Config, seq uint64) (ev fare.Event, saved string, err error) {
	if !HasOutbox(cfg.DataDir) {
		return ev, "", fmt.Errorf("%s holds no terminal outbox (no MANIFEST there): give the terminal's --data", cfg.DataDir)
	}
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return ev, "", errors.New("no signing key")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	db, err := badger.Open(badger.DefaultOptions(cfg.DataDir).WithLogger(nil).WithSyncWrites(true))
	if err != nil {
		return ev, "", fmt.Errorf("open terminal store %s (stop the terminal first): %w", cfg.DataDir, err)
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	pub := cfg.Key.Public().(ed25519.PublicKey)
	var raw []byte
	err = db.View(func(txn *badger.Txn) error {
		meta := func(k []byte) ([]byte, error) {
			item, err := txn.Get(k)
			if err != nil {
				return nil, fmt.Errorf("outbox record %s: %w", k, err)
			}
			return item.ValueCopy(nil)
		}
		signer, err := meta(keySigner)
		if err != nil {
			return err
		}
		if !bytes.Equal(signer, pub) {
			return fmt.Errorf("the outbox's events are signed with key 0x%x, not this --key's 0x%x", signer, []byte(pub))
		}
		if id, err := meta(keyTerminalID); err != nil {
			return err
		} else if string(id) != cfg.ID {
			return fmt.Errorf("the outbox is terminal %s's, not %s", id, cfg.ID)
		}
		confirmed, err := getU64(txn, keyConfirmed)
		if err != nil {
			return err
		}
		last, err := getU64(txn, keyLastSeq)
		if err != nil {
			return err
		}
		if seq <= confirmed || seq > last {
			return fmt.Errorf("sequence %d is not pending in this outbox (clearing confirmed it to %d, its last is %d)", seq, confirmed, last)
		}
		if raw, err = readOutboxEntry(txn, seq); err != nil {
			return err
		}
		if e, err := fare.Decode(raw); err == nil && e.Verify(pub) == nil {
			return fmt.Errorf("outbox entry %d verifies with the terminal's key: it is whole, and goes to clearing as it is (nothing to give up)", seq)
		}
		return nil
	})
	if err != nil {
		return ev, "", err
	}
	saved = filepath.Join(cfg.DataDir, fmt.Sprintf("damaged-entry-%d", seq))
	if err := writeSynced(saved, raw); err != nil {
		return ev, "", fmt.Errorf("save the damaged entry: %w", err)
	}
	now := cfg.Now().UTC()
	ev = fare.Event{ID: fare.NewEventID(now), Terminal: cfg.ID, Operator: cfg.Operator, Stop: cfg.Stop, Gate: "outbox",
		Direction: fare.Validate, Media: fare.Card, MediaToken: EntryDamagedToken, DeviceTime: now, Decision: fare.Denied,
		Reason: ReasonEntryDamaged, Sequence: seq}
	signed, err := fare.Sign(&ev, cfg.Key)
	if err != nil {
		return ev, "", err
	}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(outboxKey(seq), signed) }); err != nil {
		return ev, "", fmt.Errorf("outbox entry %d: %w", seq, err)
	}
	return ev, saved, nil
}

// writeSynced writes b to path, owner-only, and syncs it.
func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
