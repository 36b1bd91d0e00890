package terminal

import (
	"os"

	"github.com/dgraph-io/badger/v4"
)

func (t *Terminal) outboxEntry(seq uint64) ([]byte, error) {
	var raw []byte
	err := t.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(outboxKey(seq))
		if err != nil {
			return err
		}
		raw, err = item.ValueCopy(nil)
		return err
	})
	return raw, err
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }

// testNonce is the nonce anchorWith's request carried.
var testNonce = []byte("sixteen byte nce")

// anchorWith acts on msg as Run does for an unanchored outbox whose request
// carried testNonce.
func (t *Terminal) anchorWith(msg []byte) { t.anchorAsked(msg, testNonce) }

// anchorAsked acts on msg as the answer to a request with nonce.
func (t *Terminal) anchorAsked(msg []byte, nonce []byte) {
	(&sender{t: t, nonce: nonce}).anchor(msg)
}

// interruptRebase records a renumbering by by as begun, as a crash right
// after rebase's first transaction leaves it.
func (t *Terminal) interruptRebase(by uint64) error {
	return t.db.Update(func(txn *badger.Txn) error {
		if err := setU64(txn, keyRebaseBy, by); err != nil {
			return err
		}
		return setU64(txn, keyRebaseNext, t.lastSeq.Load())
	})
}

// asBeforeAnchoring leaves the outbox as a version before signer binding
// and anchoring did.
func (t *Terminal) asBeforeAnchoring() error {
	return t.db.Update(func(txn *badger.Txn) error {
		if err := txn.Delete(keySigner); err != nil {
			return err
		}
		return txn.Delete(keyUnanchored)
	})
}

// dropTerminalIDRecord makes the closed outbox in dir look as one from
// before the terminal id was recorded.
func dropTerminalIDRecord(dir string) error { return dropRecord(dir, keyTerminalID) }

// dropOperatorsRunRecord makes the closed outbox in dir look as one from
// before the operators it ran with were listed.
func dropOperatorsRunRecord(dir string) error { return dropRecord(dir, keyOperatorsRun) }

// dropRecord deletes record key of the closed outbox in dir.
func dropRecord(dir string, key []byte) error {
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(txn *badger.Txn) error { return txn.Delete(key) })
}

// failCommits makes the outbox's commits fail with err, as a disk turned
// read-only does (nil: commit again). Set between taps: the writer reads
// it after taking a tap.
func (t *Terminal) failCommits(err error) {
	if err == nil {
		t.commitTxn = (*badger.Txn).Commit
		return
	}
	t.commitTxn = func(txn *badger.Txn) error {
		txn.Discard()
		return err
	}
}

// failSyncs makes the outbox's commits write their entries and then fail
// with err, as a failed sync of Badger's write-ahead log does: the entries
// stay readable in its memtable (nil: commit again).
func (t *Terminal) failSyncs(err error) {
	if err == nil {
		t.commitTxn = (*badger.Txn).Commit
		return
	}
	t.commitTxn = func(txn *badger.Txn) error {
		if cerr := txn.Commit(); cerr != nil {
			return cerr
		}
		return err
	}
}
