package terminal

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/fare/storecheck"
)

// ReasonEntryDamaged is the reason of the denied tap a gate signs in place
// of an outbox entry its disk damaged (GiveUpDamaged), and EntryDamagedToken
// that tap's card token, which is no card's; entryDamagedGate its gate.
const (
	ReasonEntryDamaged = "outbox-entry-damaged"
	EntryDamagedToken  = "outbox-entry-damaged"
	entryDamagedGate   = "outbox"
)

// standIn says whether ev, signed with the gate's own key, is the denied tap
// GiveUpDamaged signed in place of a damaged entry.
func standIn(ev *fare.Event) bool {
	return ev.Reason == ReasonEntryDamaged && ev.MediaToken == EntryDamagedToken && ev.Gate == entryDamagedGate && ev.Decision == fare.Denied
}

// ErrStoreUnclean is returned by GiveUpDamaged for a store not closed
// cleanly (a crash) or that needs repair: only the gate's own start
// repairs it, keeping a copy first and checking that no accepted tap was
// lost.
var ErrStoreUnclean = errors.New("the terminal's store was not closed cleanly or needs repair")

// GiveUpDamaged gives up outbox entry seq of the gate cfg describes, which
// its disk damaged: the entry no longer verifies with the gate's key, so it
// is never sent, and clearing, which confirms only unbroken runs of
// sequences, keeps every later entry in the outbox for ever. In its place
// the gate signs, under the same sequence, a denied tap of reason
// ReasonEntryDamaged (charged to nobody, shown to operators as what it
// is); the damaged bytes are saved in the terminal's data directory
// (damaged-entry-SEQ), owner-only, for whoever recovers the tap, and their
// path returned.
//
// The tap names the operator and stop the gate last ran with (recorded in
// its outbox at each start; for an outbox from before that record, those
// its newest entry that verifies names): clearing drops an event naming
// another operator without using up its sequence, and the gap would stay.
// cfg.Operator and cfg.Stop may be empty; given, they must be those. An
// outbox that holds neither record nor whole entry takes them from cfg.
//
// Run with the gate stopped. An entry that verifies, one outside the
// outbox's pending sequences, a key or id other than the outbox's are
// refused, as is (ErrStoreUnclean) a store not closed cleanly: Badger's
// open would repair it, deleting what it cannot read, without the copy and
// the check for lost taps the gate's own start makes. Nothing is opened
// read-write before every check has passed.
func GiveUpDamaged(cfg Config, seq uint64) (ev fare.Event, saved string, err error) {
	if seq == 0 {
		return ev, "", errors.New("sequence 0: outbox sequences start at 1")
	}
	if err := fare.ValidateID(cfg.ID); err != nil {
		return ev, "", fmt.Errorf("terminal id %q: %w", cfg.ID, err)
	}
	for name, v := range map[string]string{"operator": cfg.Operator, "stop": cfg.Stop} {
		if v == "" {
			continue
		}
		if err := fare.ValidateID(v); err != nil {
			return ev, "", fmt.Errorf("%s id %q: %w", name, v, err)
		}
	}
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return ev, "", errors.New("no signing key")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	dir := cfg.DataDir
	if !HasOutbox(dir) {
		return ev, "", fmt.Errorf("%s holds no terminal outbox (no MANIFEST there): give the terminal's --data", dir)
	}
	if fare.DirLocked(dir) {
		return ev, "", fmt.Errorf("the terminal's store in %s is open in another process: stop the terminal first", dir)
	}
	if unclean, why := storeUnclean(dir); unclean {
		return ev, "", fmt.Errorf("%w (%s: %v): start the terminal once, which repairs it, keeping a copy aside and checking that no accepted tap was lost, then stop it and give the entry up", ErrStoreUnclean, dir, why)
	}
	opts := storeOptions(dir)
	if err := storecheck.Store(opts); errors.Is(err, storecheck.ErrNoAccess) {
		return ev, "", err
	} else if err != nil {
		return ev, "", fmt.Errorf("%w (%s: %v): a damaged table give-up cannot read past; restore the store from a backup, or move it aside (keep it) and start the gate on an empty --data", ErrStoreUnclean, dir, err)
	}
	ro, err := badger.Open(opts.WithReadOnly(true))
	if err != nil {
		return ev, "", fmt.Errorf("%w (%s does not open read-only: %v): start the terminal once, which repairs it, keeping a copy aside and checking that no accepted tap was lost, then stop it and give the entry up", ErrStoreUnclean, dir, err)
	}
	pub := cfg.Key.Public().(ed25519.PublicKey)
	var raw []byte
	err = ro.View(func(txn *badger.Txn) error {
		var err error
		raw, err = damagedEntry(txn, pub, cfg.ID, seq)
		if err != nil {
			return err
		}
		cfg.Operator, cfg.Stop, err = gateIdentity(txn, pub, seq, cfg.Operator, cfg.Stop)
		return err
	})
	if cerr := ro.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return ev, "", err
	}
	if err := newDiskRoom(dir, cfg.MinFreeBytes).checkOpen(time.Now()); err != nil {
		return ev, "", err
	}

	now := cfg.Now().UTC()
	ev = fare.Event{ID: fare.NewEventID(now), Terminal: cfg.ID, Operator: cfg.Operator, Stop: cfg.Stop, Gate: entryDamagedGate,
		Direction: fare.Validate, Media: fare.Card, MediaToken: EntryDamagedToken, DeviceTime: now, Decision: fare.Denied,
		Reason: ReasonEntryDamaged, Sequence: seq}
	signed, err := fare.Sign(&ev, cfg.Key)
	if err != nil {
		return ev, "", err
	}
	if saved, err = saveDamaged(dir, seq, raw); err != nil {
		return ev, "", fmt.Errorf("save the damaged entry: %w", err)
	}
	db, err := badger.Open(opts)
	if err != nil {
		return ev, "", fmt.Errorf("open terminal store %s (stop the terminal first): %w", dir, err)
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	err = db.Update(func(txn *badger.Txn) error {
		now, err := damagedEntry(txn, pub, cfg.ID, seq)
		if err != nil {
			return err
		}
		if !bytes.Equal(now, raw) {
			return fmt.Errorf("outbox entry %d changed while it was given up: run the command again", seq)
		}
		return txn.Set(outboxKey(seq), signed)
	})
	if err != nil {
		return ev, "", fmt.Errorf("outbox entry %d: %w", seq, err)
	}
	return ev, saved, nil
}

// damagedEntry checks that the outbox is the one of the terminal id signing
// with pub and that entry seq is pending there and damaged, and returns it.
func damagedEntry(txn *badger.Txn, pub ed25519.PublicKey, id string, seq uint64) ([]byte, error) {
	meta := func(k []byte) ([]byte, error) {
		item, err := txn.Get(k)
		if err != nil {
			return nil, fmt.Errorf("outbox record %s: %w", k, err)
		}
		return item.ValueCopy(nil)
	}
	signer, err := meta(keySigner)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(signer, pub) {
		return nil, fmt.Errorf("the outbox's events are signed with key 0x%x, not this --key's 0x%x", signer, []byte(pub))
	}
	if held, err := meta(keyTerminalID); err != nil {
		return nil, err
	} else if string(held) != id {
		return nil, fmt.Errorf("the outbox is terminal %s's, not %s", held, id)
	}
	confirmed, err := getU64(txn, keyConfirmed)
	if err != nil {
		return nil, err
	}
	last, err := getU64(txn, keyLastSeq)
	if err != nil {
		return nil, err
	}
	if seq <= confirmed || seq > last {
		return nil, fmt.Errorf("sequence %d is not pending in this outbox (clearing confirmed it to %d, its last is %d)", seq, confirmed, last)
	}
	raw, err := readOutboxEntry(txn, seq)
	if err != nil {
		return nil, err
	}
	if e, err := fare.Decode(raw); err == nil && e.Verify(pub) == nil {
		if standIn(&e.Event) {
			return nil, fmt.Errorf("outbox entry %d was given up already: it is the signed stand-in (%s), which goes to clearing in its place (nothing more to give up)", seq, ReasonEntryDamaged)
		}
		return nil, fmt.Errorf("outbox entry %d verifies with the terminal's key: it is whole, and goes to clearing as it is (nothing to give up)", seq)
	}
	return raw, nil
}

// gateIdentity is the operator and stop the gate runs with: those recorded
// at its last start, else those its newest whole entry other than seq
// names, else operator and stop as given. Given ones that differ from the
// outbox's are refused.
func gateIdentity(txn *badger.Txn, pub ed25519.PublicKey, seq uint64, operator, stop string) (string, string, error) {
	recOp, err := getString(txn, keyOperator)
	if err != nil {
		return "", "", err
	}
	recStop, err := getString(txn, keyStop)
	if err != nil {
		return "", "", err
	}
	source := "the operator and stop it last ran with, recorded in its outbox"
	if recOp == "" || recStop == "" {
		recOp, recStop, source = "", "", ""
		it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: []byte{pOutbox}})
		defer it.Close()
		for it.Seek(outboxKey(math.MaxUint64)); it.Valid(); it.Next() {
			if bytes.Equal(it.Item().Key(), outboxKey(seq)) {
				continue
			}
			raw, err := it.Item().ValueCopy(nil)
			if err != nil {
				return "", "", err
			}
			if e, err := fare.Decode(raw); err == nil && e.Verify(pub) == nil {
				recOp, recStop = e.Operator, e.Stop
				source = fmt.Sprintf("those its newest whole entry (%d) names", e.Sequence)
				break
			}
		}
	}
	if recOp == "" {
		if operator == "" || stop == "" {
			return "", "", errors.New("the outbox records no operator and stop and holds no whole entry that names them: give the gate's own --operator and --stop")
		}
		return operator, stop, nil
	}
	if (operator != "" && operator != recOp) || (stop != "" && stop != recStop) {
		return "", "", fmt.Errorf("the gate runs as operator %s at stop %s (%s), not %s at %s: the tap signed in the entry's place names them, or clearing drops it as another gate's and the gap stays; give those, or leave --operator and --stop out",
			recOp, recStop, source, orDash(operator), orDash(stop))
	}
	return recOp, recStop, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// getString reads the string under k; "" if it is not there.
func getString(txn *badger.Txn, k []byte) (string, error) {
	item, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("outbox record %s: %w", k, err)
	}
	v, err := item.ValueCopy(nil)
	return string(v), err
}

// saveDamaged writes raw, owner-only and synced, to damaged-entry-SEQ in
// dir, or, where a file of that name holds other bytes (an earlier
// incident's), to one named after the time too.
func saveDamaged(dir string, seq uint64, raw []byte) (string, error) {
	path := filepath.Join(dir, fmt.Sprintf("damaged-entry-%d", seq))
	if old, err := os.ReadFile(path); err == nil && !bytes.Equal(old, raw) {
		path += "-" + time.Now().UTC().Format(copyStamp)
	}
	if err := writeSynced(path, raw); err != nil {
		return "", err
	}
	return path, fare.SyncDir(dir)
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
