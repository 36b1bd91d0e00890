package clearing

// balanceCache keeps the journal balances the applying goroutine last read
// or wrote, so a batch reads from memory the accounts it touched recently
// instead of from Badger (a rider's balance is read in every batch the rider
// taps in; a new rider's is a miss Badger answers only after searching every
// level). Only the applying goroutine uses it, and it is the only writer of
// balances: the apply path, and postPayment on the same goroutine, which
// forgets the accounts it writes. Like the rider cache it holds what
// prepared batches wrote before their commit, so it is emptied whenever a
// batch fails to prepare or commit.
type balanceCache struct {
	g generations[Balance]
}

// balanceCacheSize is how many accounts the cache holds (two generations):
// about 30 MB.
const balanceCacheSize = 1 << 18

func (c *balanceCache) get(account string) (Balance, bool) {
	if c.g.half == 0 {
		return Balance{}, false
	}
	return c.g.get(account)
}

func (c *balanceCache) put(b Balance) {
	if c.g.half == 0 {
		c.g = newGenerations[Balance](balanceCacheSize)
	}
	c.g.put(b.Account, b)
}

func (c *balanceCache) forget(account string) {
	delete(c.g.cur, account)
	delete(c.g.old, account)
}

// reset empties the cache.
func (c *balanceCache) reset() { c.g = generations[Balance]{} }

// forgetUncommitted empties the applying goroutine's caches (rider days,
// sequences, balances): they may hold writes of a batch that did not
// commit.
func (s *Store) forgetUncommitted() {
	s.cache.reset()
	s.seqs.reset()
	s.balances.reset()
}
