package clearing

import (
	"encoding/binary"
	"errors"

	"github.com/dgraph-io/badger/v4"
)

// batchTxn is the apply path's view of the store: one batch's write
// transaction, read through the writes of the batch before it while that
// batch's commit is still on its way to disk.
//
// Why: the synced commit of a priced batch takes about as long as pricing
// it, and Badger's doWrites goroutine does it on its own core. Clearing
// opens the next batch's transaction before the previous one commits, so
// that transaction reads the store as it was before the previous batch;
// whatever the previous batch wrote is read from prev instead. Clearing is
// the only writer of every key the apply path reads (dedup records,
// watermarks, balances, rider days and weeks), so the two together are the
// store as it will be. Other writers (gate lists, enrolments) keep to keys
// the apply path only reads through txn, as an earlier view.
type batchTxn struct {
	txn   *badger.Txn
	prev  map[string][]byte // the previous batch's writes while it commits; nil once it has
	wrote map[string][]byte // this batch's writes: the next batch's prev
}

// newBatchTxn makes the view; writes is how many keys the batch is
// expected to write (a size hint).
func newBatchTxn(txn *badger.Txn, prev map[string][]byte, writes int) *batchTxn {
	return &batchTxn{txn: txn, prev: prev, wrote: make(map[string][]byte, max(writes, 64))}
}

// get calls fn with key's value: this batch's, else the previous batch's,
// else the store's. It returns badger.ErrKeyNotFound for a key none has.
// The value is valid only during fn.
func (b *batchTxn) get(key []byte, fn func([]byte) error) error {
	if v, ok := b.wrote[string(key)]; ok {
		return fn(v)
	}
	if v, ok := b.prev[string(key)]; ok {
		return fn(v)
	}
	item, err := b.txn.Get(key)
	if err != nil {
		return err
	}
	return item.Value(fn)
}

// set writes key. Like badger.Txn.Set it keeps key and v: neither may
// change afterwards.
func (b *batchTxn) set(key, v []byte) error {
	if err := b.txn.Set(key, v); err != nil {
		return err
	}
	b.wrote[string(key)] = v
	return nil
}

// setAll sets key/value pairs.
func (b *batchTxn) setAll(kv ...[]byte) error {
	for i := 0; i < len(kv); i += 2 {
		if err := b.set(kv[i], kv[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// u64 reads a counter (0 when absent).
func (b *batchTxn) u64(key []byte) (uint64, error) {
	var v uint64
	err := b.get(key, func(r []byte) (err error) { v, err = decodeU64(key, r); return err })
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	return v, err
}

func (b *batchTxn) setU64(key []byte, v uint64) error {
	return b.set(key, binary.BigEndian.AppendUint64(make([]byte, 0, 8), v))
}

// balance reads an account's balance (zero when it has none).
func (b *batchTxn) balance(account string) (Balance, error) {
	bal := Balance{Account: account}
	err := b.get(keyStr(pBalance, account), func(v []byte) error { return decodeBalance(&bal, v) })
	if errors.Is(err, badger.ErrKeyNotFound) {
		return bal, nil
	}
	return bal, err
}

func (b *batchTxn) putBalance(bal Balance) error {
	return b.set(keyStr(pBalance, bal.Account), encodeBalance(bal))
}
