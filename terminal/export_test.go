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
